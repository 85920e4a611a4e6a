"""Application plans: created and changed by admins, read by everyone."""

from __future__ import annotations

from typing import Any

from openmaas.access.audit import audit, commit_change
from openmaas.access.snapshot import SnapshotStore, plan_from_row
from openmaas.domain.accounts import Principal
from openmaas.domain.errors import Conflict, NotFound
from openmaas.domain.plans import Plan, PlanRule
from openmaas.store import Database, access_repo, users_repo
from openmaas.store.tables import PlanRow


def _canonical(fields: dict[str, Any]) -> dict[str, Any]:
    """Rules as stored: only the limits and prices each one sets."""
    if fields.get("rules") is None:
        return fields
    return {**fields, "rules": [PlanRule.from_dict(rule).to_dict() for rule in fields["rules"]]}


class PlanService:
    def __init__(self, db: Database, snapshots: SnapshotStore) -> None:
        self.db = db
        self.snapshots = snapshots

    async def list(self) -> list[Plan]:
        async with self.db.session() as session:
            return [plan_from_row(row) for row in await access_repo.list_plans(session=session)]

    async def get(self, name: str) -> Plan:
        async with self.db.session() as session:
            row = await access_repo.get_plan_by_name(session=session, name=name)
        if row is None:
            raise NotFound(f"no plan {name!r}", code="plan_not_found")
        return plan_from_row(row)

    async def create(self, actor: Principal, fields: dict[str, Any]) -> Plan:
        fields = _canonical(fields)
        async with self.db.session() as session:
            row = await access_repo.create_plan(session=session, row=PlanRow(**fields))
            audit(session, actor, "plan.create", f"plan:{row.name}", **fields)
            await commit_change(session, self.snapshots)
        return plan_from_row(row)

    async def ensure(self, actor: Principal, fields: dict[str, Any]) -> Plan:
        """Create the plan unless one of that name exists (the demo)."""
        try:
            return await self.get(fields["name"])
        except NotFound:
            return await self.create(actor, fields)

    async def update(self, actor: Principal, name: str, changes: dict[str, Any]) -> Plan:
        changes = _canonical(changes)
        async with self.db.session() as session:
            row = await access_repo.get_plan_by_name(session=session, name=name)
            if row is None:
                raise NotFound(f"no plan {name!r}", code="plan_not_found")
            users_repo.apply(row, changes)
            audit(session, actor, "plan.update", f"plan:{name}", **changes)
            await commit_change(session, self.snapshots)
        return plan_from_row(row)

    async def delete(self, actor: Principal, name: str) -> None:
        async with self.db.session() as session:
            row = await access_repo.get_plan_by_name(session=session, name=name)
            if row is None:
                raise NotFound(f"no plan {name!r}", code="plan_not_found")
            in_use = await access_repo.count_applications_on_plan(session=session, plan_id=row.id)
            if in_use:
                raise Conflict(
                    f"plan {name!r} has {in_use} application(s); move them first",
                    code="plan_in_use",
                )
            await session.delete(row)
            audit(session, actor, "plan.delete", f"plan:{name}")
            await commit_change(session, self.snapshots)

"""Writing a change: audit it, bump the access version, commit, and reload this worker."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from openmaas.access.snapshot import SnapshotStore
from openmaas.domain.accounts import Principal
from openmaas.domain.errors import Conflict
from openmaas.store import Database, access_repo, audit_repo


def audit(
    session: AsyncSession, actor: Principal, action: str, target: str, **details: Any
) -> None:
    audit_repo.add_entry(
        session=session,
        actor=actor.username,
        actor_id=actor.user_id,
        action=action,
        target=target,
        details={k: _plain(v) for k, v in details.items() if v is not None},
    )


def _plain(value: Any) -> Any:
    """JSON-ready: exact amounts as strings, as the API shows them."""
    if isinstance(value, Decimal):
        return format(value, "f")
    return value


async def commit_change(session: AsyncSession, snapshots: SnapshotStore) -> None:
    """Commit a change the gate mirrors; this worker sees it at once, others within a poll."""
    try:
        await access_repo.bump_version(session=session)
        await session.commit()
    except IntegrityError as exc:
        await session.rollback()
        raise Conflict("the change conflicts with an existing record", code="conflict") from exc
    await snapshots.load()


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list(
        self, *, actor: str | None, action: str | None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        async with self.db.session() as session:
            rows, total = await audit_repo.list_entries(
                session=session, actor=actor, action=action, limit=limit, offset=offset
            )
        entries = [
            {
                "id": row.id,
                "at": row.at.isoformat(),
                "actor": row.actor,
                "actor_id": row.actor_id,
                "action": row.action,
                "target": row.target,
                "details": row.details,
            }
            for row in rows
        ]
        return entries, total

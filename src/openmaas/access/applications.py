"""Applications and their keys. Developers see and touch only their own; admins all.

Another developer's application answers 404, exactly like one that does not exist, so
nobody can learn which application ids are taken.
"""

from __future__ import annotations

import builtins
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from openmaas.access.audit import audit, commit_change
from openmaas.access.credentials import new_key
from openmaas.access.snapshot import SnapshotStore
from openmaas.domain.accounts import Principal
from openmaas.domain.applications import ApiKey, Application, ApplicationStatus
from openmaas.domain.errors import BadRequest, Conflict, Forbidden, NotFound
from openmaas.store import Database, access_repo, users_repo
from openmaas.store.tables import ApiKeyRow, ApplicationRow, PlanRow, UserRow


def application_from_rows(app: ApplicationRow, plan: PlanRow, user: UserRow) -> Application:
    return Application(
        id=app.id,
        name=app.name,
        description=app.description,
        user_id=app.user_id,
        owner=user.username,
        plan=plan.name,
        status=ApplicationStatus(app.status),
        created_at=app.created_at,
        archived_at=app.archived_at,
    )


def key_from_row(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        user_id=row.user_id,
        application_id=row.application_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


def _not_archived(app: ApplicationRow) -> None:
    if app.archived_at is not None:
        raise Conflict(f"application {app.id} is archived", code="application_archived")


def _not_found(application_id: int) -> NotFound:
    return NotFound(f"no application {application_id}", code="application_not_found")


class ApplicationService:
    def __init__(
        self,
        db: Database,
        snapshots: SnapshotStore,
        *,
        default_plan: str,
        max_applications: int,
        max_keys: int,
    ) -> None:
        self.db = db
        self.snapshots = snapshots
        self.default_plan = default_plan
        # Per developer; admins are not capped. Every key and application is in each
        # worker's memory (the access snapshot) and reloaded on each change.
        self.max_applications = max_applications
        self.max_keys = max_keys

    async def _room_for_key(self, session: AsyncSession, actor: Principal, owner_id: int) -> None:
        if actor.is_admin:
            return
        if await users_repo.count_active_keys(session=session, user_id=owner_id) >= self.max_keys:
            raise Conflict(
                f"a developer may hold {self.max_keys} keys; revoke one first",
                code="too_many_keys",
            )

    async def _owned(
        self, session: AsyncSession, actor: Principal, application_id: int
    ) -> tuple[ApplicationRow, PlanRow, UserRow]:
        found = await access_repo.get_application(session=session, application_id=application_id)
        if found is None or (not actor.is_admin and found[0].user_id != actor.user_id):
            raise _not_found(application_id)
        return found

    async def _plan(self, session: AsyncSession, name: str) -> PlanRow:
        plan = await access_repo.get_plan_by_name(session=session, name=name)
        if plan is None:
            raise NotFound(f"no plan {name!r}", code="plan_not_found")
        return plan

    async def list(
        self, actor: Principal, *, user_id: int | None = None, include_archived: bool = False
    ) -> list[Application]:
        owner = user_id if actor.is_admin else actor.user_id
        async with self.db.session() as session:
            rows = await access_repo.list_applications(
                session=session, user_id=owner, include_archived=include_archived
            )
        return [application_from_rows(*row) for row in rows]

    async def get(self, actor: Principal, application_id: int) -> Application:
        async with self.db.session() as session:
            return application_from_rows(*await self._owned(session, actor, application_id))

    async def create(
        self,
        actor: Principal,
        *,
        name: str,
        description: str = "",
        plan: str | None = None,
        user_id: int | None = None,
    ) -> Application:
        if actor.user_id is None and user_id is None:
            raise Forbidden("the admin key owns no applications; give user_id", code="no_owner")
        owner_id = user_id if (actor.is_admin and user_id is not None) else actor.user_id
        async with self.db.session() as session:
            plan_row = await self._plan(session, plan or self.default_plan)
            owner = await users_repo.get_user(session=session, user_id=owner_id or 0)
            if owner is None:
                raise NotFound(f"no user {owner_id}", code="user_not_found")
            if not actor.is_admin and (
                await access_repo.count_applications(session=session, user_id=owner.id)
                >= self.max_applications
            ):
                raise Conflict(
                    f"a developer may own {self.max_applications} applications; delete one first",
                    code="too_many_applications",
                )
            needs_approval = plan_row.approval_required and not actor.is_admin
            status = ApplicationStatus.PENDING if needs_approval else ApplicationStatus.ACTIVE
            row = ApplicationRow(
                name=name,
                description=description,
                user_id=owner.id,
                plan_id=plan_row.id,
                status=status.value,
            )
            row = await access_repo.create_application(session=session, row=row)
            audit(session, actor, "application.create", f"application:{row.id}", plan=plan_row.name)
            await commit_change(session, self.snapshots)
            return application_from_rows(row, plan_row, owner)

    async def update(
        self, actor: Principal, application_id: int, changes: dict[str, Any]
    ) -> Application:
        async with self.db.session() as session:
            app, plan, owner = await self._owned(session, actor, application_id)
            _not_archived(app)
            if changes.get("status") == ApplicationStatus.ARCHIVED.value:
                raise BadRequest("delete the application to archive it", code="invalid_status")
            if "status" in changes and not actor.is_admin:
                raise Forbidden(
                    "only admins approve or suspend applications", code="admin_required"
                )
            if changes.get("plan") is not None and changes["plan"] != plan.name:
                plan = await self._plan(session, changes["plan"])
                app.plan_id = plan.id
                if plan.approval_required and not actor.is_admin:
                    app.status = ApplicationStatus.PENDING.value
            for field in ("name", "description", "status"):
                if changes.get(field) is not None:
                    setattr(app, field, str(changes[field]))
            audit(session, actor, "application.update", f"application:{app.id}", **changes)
            await commit_change(session, self.snapshots)
            return application_from_rows(app, plan, owner)

    async def delete(self, actor: Principal, application_id: int) -> None:
        """Archive: the application and its keys stop working at once; its usage,
        statements and invoices stay, for its owner and for admins."""
        async with self.db.session() as session:
            app, _plan, _owner = await self._owned(session, actor, application_id)
            if app.archived_at is not None:
                return
            now = datetime.now(UTC)
            app.status, app.archived_at = ApplicationStatus.ARCHIVED.value, now
            keys = await users_repo.revoke_keys(session=session, application_id=app.id, now=now)
            audit(session, actor, "application.archive", f"application:{app.id}", keys=keys)
            await commit_change(session, self.snapshots)

    async def list_keys(
        self, actor: Principal, application_id: int | None
    ) -> builtins.list[ApiKey]:
        """An application's keys, or with ``application_id=None`` the actor's personal keys."""
        async with self.db.session() as session:
            if application_id is not None:
                await self._owned(session, actor, application_id)
            rows = await users_repo.list_keys(
                session=session, user_id=actor.user_id, application_id=application_id
            )
        return [key_from_row(row) for row in rows]

    async def create_key(
        self,
        actor: Principal,
        application_id: int | None,
        *,
        name: str,
        expires_at: datetime | None = None,
    ) -> tuple[ApiKey, str]:
        """A new key and the secret, which is shown this once and never stored."""
        async with self.db.session() as session:
            if application_id is not None:
                app = (await self._owned(session, actor, application_id))[0]
                _not_archived(app)
                owner_id = app.user_id
            elif actor.user_id is None:
                raise Forbidden("the admin key has no personal keys", code="no_owner")
            else:
                owner_id = actor.user_id
            await self._room_for_key(session, actor, owner_id)
            secret, prefix, key_hash = new_key()
            row = await users_repo.add_key(
                session=session,
                user_id=owner_id,
                name=name,
                prefix=prefix,
                key_hash=key_hash,
                expires_at=expires_at,
                application_id=application_id,
            )
            audit(session, actor, "key.create", f"key:{row.id}", application_id=application_id)
            await commit_change(session, self.snapshots)
            return key_from_row(row), secret

    async def _key(
        self, session: AsyncSession, actor: Principal, application_id: int | None, key_id: int
    ) -> ApiKeyRow:
        if application_id is not None:
            await self._owned(session, actor, application_id)
        row = await users_repo.get_key(session=session, key_id=key_id)
        if (
            row is None
            or row.application_id != application_id
            or (application_id is None and row.user_id != actor.user_id)
        ):
            raise NotFound(f"no key {key_id}", code="key_not_found")
        return row

    async def revoke_key(self, actor: Principal, application_id: int | None, key_id: int) -> ApiKey:
        async with self.db.session() as session:
            row = await self._key(session, actor, application_id, key_id)
            if row.revoked_at is None:
                row.revoked_at = datetime.now(UTC)
                audit(session, actor, "key.revoke", f"key:{row.id}", application_id=application_id)
                await commit_change(session, self.snapshots)
            return key_from_row(row)

    async def rotate_key(
        self, actor: Principal, application_id: int | None, key_id: int
    ) -> tuple[ApiKey, str]:
        """Revoke a key and issue its replacement (same name and expiry) in one transaction."""
        async with self.db.session() as session:
            old = await self._key(session, actor, application_id, key_id)
            if old.revoked_at is not None:
                raise NotFound(f"key {key_id} is revoked", code="key_revoked")
            old.revoked_at = datetime.now(UTC)
            secret, prefix, key_hash = new_key()
            row = await users_repo.add_key(
                session=session,
                user_id=old.user_id,
                name=old.name,
                prefix=prefix,
                key_hash=key_hash,
                expires_at=old.expires_at,
                application_id=application_id,
            )
            audit(session, actor, "key.rotate", f"key:{old.id}", replacement=row.id)
            await commit_change(session, self.snapshots)
            return key_from_row(row), secret

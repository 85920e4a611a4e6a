"""Admin purge: the only way history leaves the database, audited, never from an invoice.

Deleting an application or a user archives it (its usage stays, it keeps showing on
statements and invoices). A purge removes an archived application or user for good,
with its keys and its usage records, but only usage already on a closed invoice: while
any of its usage waits to be invoiced, the purge is refused. Invoices copy what they bill
(names, quantities, prices, amounts) and are never touched.
"""

from __future__ import annotations

from sqlalchemy import delete

from openmaas.access.audit import audit, commit_change
from openmaas.access.snapshot import SnapshotStore
from openmaas.domain.accounts import Principal
from openmaas.domain.errors import Conflict, NotFound
from openmaas.store import Database, access_repo, billing_repo, users_repo
from openmaas.store.tables import ApiKeyRow, ApplicationRow


def _unbilled(count: int, what: str) -> Conflict:
    return Conflict(
        f"{what} has {count} usage record(s) not invoiced yet; close their month first",
        code="unbilled_usage",
    )


class PurgeService:
    def __init__(self, db: Database, snapshots: SnapshotStore) -> None:
        self.db = db
        self.snapshots = snapshots

    async def application(self, actor: Principal, application_id: int) -> dict[str, int]:
        async with self.db.session() as session:
            found = await access_repo.get_application(
                session=session, application_id=application_id
            )
            if found is None:
                raise NotFound(f"no application {application_id}", code="application_not_found")
            app = found[0]
            if app.archived_at is None:
                raise Conflict("delete (archive) the application first", code="not_archived")
            waiting = await billing_repo.unbilled_usage(session=session, application_id=app.id)
            if waiting:
                raise _unbilled(waiting, f"application {app.id}")
            usage = await billing_repo.purge_usage(session=session, application_id=app.id)
            await session.execute(delete(ApiKeyRow).where(ApiKeyRow.application_id == app.id))
            await session.delete(app)
            audit(session, actor, "application.purge", f"application:{app.id}", usage_rows=usage)
            await commit_change(session, self.snapshots)
        return {"usage_rows": usage}

    async def user(self, actor: Principal, user_id: int) -> dict[str, int]:
        async with self.db.session() as session:
            row = await users_repo.get_user(session=session, user_id=user_id)
            if row is None:
                raise NotFound("no such user", code="user_not_found")
            if row.archived_at is None:
                raise Conflict("delete (archive) the user first", code="not_archived")
            waiting = await billing_repo.unbilled_usage(session=session, user_id=row.id)
            if waiting:
                raise _unbilled(waiting, f"user {row.id}")
            usage = await billing_repo.purge_usage(session=session, user_id=row.id)
            await session.execute(delete(ApiKeyRow).where(ApiKeyRow.user_id == row.id))
            apps = await session.execute(
                delete(ApplicationRow).where(ApplicationRow.user_id == row.id)
            )
            await session.delete(row)
            audit(
                session,
                actor,
                "user.purge",
                f"user:{user_id}",
                usage_rows=usage,
                applications=int(apps.rowcount or 0),  # type: ignore[attr-defined]
            )
            await commit_change(session, self.snapshots)
        return {"usage_rows": usage}

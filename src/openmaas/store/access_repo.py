"""Plans, applications and the access version counter; the rows the gate's snapshot mirrors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from openmaas.domain.errors import Conflict
from openmaas.store.inserts import insert_unique
from openmaas.store.tables import (
    AccessVersionRow,
    ApiKeyRow,
    ApplicationRow,
    PlanRow,
    UserRow,
)


async def bump_version(*, session: AsyncSession) -> None:
    """Tell every worker that keys, applications, plans or users changed."""
    await session.execute(
        update(AccessVersionRow)
        .where(AccessVersionRow.id == 1)
        .values(version=AccessVersionRow.version + 1)
    )


async def read_version(*, session: AsyncSession) -> int:
    return int(await session.scalar(select(AccessVersionRow.version).limit(1)) or 0)


@dataclass(frozen=True, slots=True)
class SnapshotRows:
    version: int
    users: list[UserRow]
    plans: list[PlanRow]
    applications: list[ApplicationRow]
    keys: list[ApiKeyRow]


async def load_snapshot(*, session: AsyncSession) -> SnapshotRows:
    """Everything authentication and admission need, read in one transaction."""
    version = await read_version(session=session)
    users = list(await session.scalars(select(UserRow)))
    plans = list(await session.scalars(select(PlanRow)))
    applications = list(await session.scalars(select(ApplicationRow)))
    keys = list(await session.scalars(select(ApiKeyRow).where(ApiKeyRow.revoked_at.is_(None))))
    return SnapshotRows(version, users, plans, applications, keys)


async def create_plan(*, session: AsyncSession, row: PlanRow) -> PlanRow:
    return await insert_unique(
        session, row, Conflict(f"plan {row.name!r} exists", code="plan_exists")
    )


async def get_plan(*, session: AsyncSession, plan_id: int) -> PlanRow | None:
    return await session.get(PlanRow, plan_id)


async def get_plan_by_name(*, session: AsyncSession, name: str) -> PlanRow | None:
    return await session.scalar(select(PlanRow).where(PlanRow.name == name))


async def list_plans(*, session: AsyncSession) -> list[PlanRow]:
    return list(await session.scalars(select(PlanRow).order_by(PlanRow.id)))


async def count_applications_on_plan(*, session: AsyncSession, plan_id: int) -> int:
    query = (
        select(func.count()).select_from(ApplicationRow).where(ApplicationRow.plan_id == plan_id)
    )
    return int(await session.scalar(query) or 0)


async def create_application(*, session: AsyncSession, row: ApplicationRow) -> ApplicationRow:
    return await insert_unique(
        session,
        row,
        Conflict(f"you already have an application {row.name!r}", code="application_exists"),
    )


async def get_application(
    *, session: AsyncSession, application_id: int
) -> tuple[ApplicationRow, PlanRow, UserRow] | None:
    query = (
        select(ApplicationRow, PlanRow, UserRow)
        .join(PlanRow, PlanRow.id == ApplicationRow.plan_id)
        .join(UserRow, UserRow.id == ApplicationRow.user_id)
        .where(ApplicationRow.id == application_id)
    )
    found = (await session.execute(query)).first()
    return None if found is None else (found[0], found[1], found[2])


async def archive_applications(*, session: AsyncSession, user_id: int, now: datetime) -> int:
    """Archive every application of a user (their keys are revoked by the caller)."""
    result = await session.execute(
        update(ApplicationRow)
        .where(ApplicationRow.user_id == user_id, ApplicationRow.archived_at.is_(None))
        .values(status="archived", archived_at=now)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def list_applications(
    *, session: AsyncSession, user_id: int | None = None, include_archived: bool = True
) -> list[tuple[ApplicationRow, PlanRow, UserRow]]:
    query = (
        select(ApplicationRow, PlanRow, UserRow)
        .join(PlanRow, PlanRow.id == ApplicationRow.plan_id)
        .join(UserRow, UserRow.id == ApplicationRow.user_id)
        .order_by(ApplicationRow.id)
    )
    if user_id is not None:
        query = query.where(ApplicationRow.user_id == user_id)
    if not include_archived:
        query = query.where(ApplicationRow.archived_at.is_(None))
    return [(a, p, u) for a, p, u in (await session.execute(query)).all()]


async def count_applications(*, session: AsyncSession, user_id: int) -> int:
    """The applications a developer owns now: archived ones keep their history, not a place."""
    query = select(func.count(ApplicationRow.id)).where(
        ApplicationRow.user_id == user_id, ApplicationRow.archived_at.is_(None)
    )
    return int(await session.scalar(query) or 0)

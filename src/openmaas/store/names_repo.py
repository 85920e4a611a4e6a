"""Names of accounts and applications by id, archived ones included (for bills)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from openmaas.store.tables import ApplicationRow, UserRow


async def usernames(*, session: AsyncSession, ids: Iterable[int]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = await session.execute(select(UserRow.id, UserRow.username).where(UserRow.id.in_(wanted)))
    return {row.id: row.username for row in rows}


async def application_names(*, session: AsyncSession, ids: Iterable[int]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = await session.execute(
        select(ApplicationRow.id, ApplicationRow.name).where(ApplicationRow.id.in_(wanted))
    )
    return {row.id: row.name for row in rows}

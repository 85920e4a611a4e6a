"""Adding a row whose unique columns may already be taken."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from openmaas.domain.errors import Conflict

Row = TypeVar("Row")


async def insert_unique(session: AsyncSession, row: Row, conflict: Conflict) -> Row:
    """Add and flush ``row``; a unique constraint it breaks becomes ``conflict`` (409)."""
    session.add(row)
    try:
        await session.flush()
    except IntegrityError as exc:
        await session.rollback()
        raise conflict from exc
    return row

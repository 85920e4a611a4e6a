"""The audit log: who changed what, when."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from openmaas.store.tables import AuditRow


def add_entry(
    *,
    session: AsyncSession,
    actor: str,
    actor_id: int | None,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
) -> None:
    session.add(
        AuditRow(
            actor=actor, actor_id=actor_id, action=action, target=target, details=details or {}
        )
    )


async def list_entries(
    *,
    session: AsyncSession,
    actor: str | None = None,
    action: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[AuditRow], int]:
    query = select(AuditRow)
    if actor:
        query = query.where(AuditRow.actor == actor)
    if action:
        query = query.where(AuditRow.action == action)
    total = await session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = await session.scalars(query.order_by(AuditRow.id.desc()).limit(limit).offset(offset))
    return list(rows), total

"""Queries on model routes and the counts and decisions of their canaries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from openmaas.store.tables import ModelRouteRow, utcnow


async def all_routes(*, session: AsyncSession) -> list[ModelRouteRow]:
    order = (ModelRouteRow.namespace, ModelRouteRow.name)
    return list(await session.scalars(select(ModelRouteRow).order_by(*order)))


def _named(namespace: str, name: str) -> tuple[Any, ...]:
    return (ModelRouteRow.namespace == namespace, ModelRouteRow.name == name)


async def get_route(*, session: AsyncSession, namespace: str, name: str) -> ModelRouteRow | None:
    return await session.scalar(select(ModelRouteRow).where(*_named(namespace, name)))


async def save_route(
    *,
    session: AsyncSession,
    row: ModelRouteRow | None,
    name: str,
    namespace: str,
    spec: dict[str, Any],
    canary_weight: int | None,
    conditions: list[dict[str, Any]],
) -> ModelRouteRow:
    """Create a route, or replace one's spec: its canary starts again from the spec."""
    now = utcnow()
    if row is None:
        row = ModelRouteRow(name=name, created_at=now, revision=0)
        session.add(row)
    row.namespace, row.spec, row.conditions = namespace, spec, conditions
    row.revision = (row.revision or 0) + 1
    row.canary_weight = canary_weight
    row.canary_state = "progressing" if canary_weight is not None else None
    row.window_started_at, row.window_requests, row.window_failures = now, 0, 0
    row.updated_at = now
    await session.flush()
    return row


async def delete_route(*, session: AsyncSession, namespace: str, name: str) -> bool:
    result = await session.execute(delete(ModelRouteRow).where(*_named(namespace, name)))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def add_canary_counts(
    *,
    session: AsyncSession,
    namespace: str,
    name: str,
    revision: int,
    requests: int,
    failures: int,
) -> None:
    """Add one worker's counts to the open window; dropped if the window has moved on."""
    await session.execute(
        update(ModelRouteRow)
        .where(*_named(namespace, name), ModelRouteRow.revision == revision)
        .values(
            window_requests=ModelRouteRow.window_requests + requests,
            window_failures=ModelRouteRow.window_failures + failures,
        )
    )


async def decide_canary(
    *,
    session: AsyncSession,
    namespace: str,
    name: str,
    revision: int,
    canary_weight: int,
    canary_state: str,
    conditions: list[dict[str, Any]],
    now: datetime,
) -> bool:
    """Record a canary step unless another worker moved the route first (compare-and-set)."""
    result = await session.execute(
        update(ModelRouteRow)
        .where(*_named(namespace, name), ModelRouteRow.revision == revision)
        .values(
            revision=ModelRouteRow.revision + 1,
            canary_weight=canary_weight,
            canary_state=canary_state,
            conditions=conditions,
            window_started_at=now,
            window_requests=0,
            window_failures=0,
            updated_at=now,
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]

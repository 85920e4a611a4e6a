"""Usage rows: batch inserts from the recorder, and sums grouped by any dimension."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import case, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from openmaas.store.tables import UsageRow

DIMENSIONS: dict[str, Any] = {
    "day": UsageRow.day,
    "month": UsageRow.month,
    "user": UsageRow.user_id,
    "application": UsageRow.application_id,
    "key": UsageRow.key_id,
    "model": UsageRow.model,
    "version": UsageRow.version,
    "endpoint": UsageRow.endpoint,
    "protocol": UsageRow.protocol,
    "status": UsageRow.status,
}


async def insert_usage(*, session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await session.execute(insert(UsageRow), list(rows))


async def summarize(
    *,
    session: AsyncSession,
    group_by: Sequence[str],
    user_id: int | None = None,
    application_id: int | None = None,
    model: str | None = None,
    start: date | None = None,
    end: date | None = None,
    month: str | None = None,
    order_by: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Sums per group; ``group_by`` names come from ``DIMENSIONS`` (checked by the caller)."""
    columns = [DIMENSIONS[name].label(name) for name in group_by]
    errors = func.sum(case((UsageRow.status >= 400, UsageRow.requests), else_=0))
    metrics = [
        func.sum(UsageRow.requests).label("requests"),
        errors.label("errors"),
        func.sum(UsageRow.input_tokens).label("input_tokens"),
        func.sum(UsageRow.output_tokens).label("output_tokens"),
        func.sum(UsageRow.latency_ms_sum).label("latency_ms_sum"),
        func.max(UsageRow.latency_ms_max).label("latency_ms_max"),
    ]
    query = select(*columns, *metrics)
    for column, value in (
        (UsageRow.user_id, user_id),
        (UsageRow.application_id, application_id),
        (UsageRow.model, model),
        (UsageRow.month, month),
    ):
        if value is not None:
            query = query.where(column == value)
    if start is not None:
        query = query.where(UsageRow.day >= start)
    if end is not None:
        query = query.where(UsageRow.day <= end)
    if group_by:
        query = query.group_by(*[DIMENSIONS[name] for name in group_by])
    if order_by == "tokens":
        query = query.order_by(
            (func.sum(UsageRow.input_tokens) + func.sum(UsageRow.output_tokens)).desc()
        )
    elif order_by == "requests":
        query = query.order_by(func.sum(UsageRow.requests).desc())
    elif group_by:
        query = query.order_by(*[DIMENSIONS[name] for name in group_by])
    if limit is not None:
        query = query.limit(limit)
    result = []
    for row in (await session.execute(query)).mappings():
        item = dict(row)
        if item["requests"] is None:  # no rows at all: SUM over nothing
            continue
        result.append(item)
    return result


# What a line of a statement or an invoice is made of: who, which model, and the terms
# (plan, rule, unit prices) the usage was recorded with.
PRICED_GROUPS: tuple[Any, ...] = (
    UsageRow.user_id,
    UsageRow.application_id,
    UsageRow.model,
    UsageRow.plan_id,
    UsageRow.plan,
    UsageRow.rule,
    UsageRow.rule_name,
    UsageRow.price_per_request,
    UsageRow.price_per_1k_input_tokens,
    UsageRow.price_per_1k_output_tokens,
)


def priced_query(*conditions: Any, by_month: bool = False, extra: Sequence[Any] = ()) -> Any:
    """Billable sums per account, application, model and terms, over the rows selected.

    Requests count when they succeeded (status below 400); tokens whenever counted.
    Rows without a plan (an admin's own calls) bill nothing and are left out.
    """
    groups = (*PRICED_GROUPS, *((UsageRow.month,) if by_month else ()), *extra)
    billable = func.sum(case((UsageRow.status < 400, UsageRow.requests), else_=0))
    return (
        select(
            *groups,
            billable.label("requests"),
            func.sum(UsageRow.input_tokens).label("input_tokens"),
            func.sum(UsageRow.output_tokens).label("output_tokens"),
            func.min(UsageRow.minute).label("period_start"),
            func.max(UsageRow.minute).label("period_end"),
        )
        .where(UsageRow.plan_id.is_not(None), *conditions)
        .group_by(*groups)
        .order_by(*extra, UsageRow.user_id, UsageRow.application_id, UsageRow.model, "period_start")
    )


async def priced_usage(
    *, session: AsyncSession, month: str, user_id: int | None = None
) -> list[dict[str, Any]]:
    conditions = [UsageRow.month == month]
    if user_id is not None:
        conditions.append(UsageRow.user_id == user_id)
    return [dict(row) for row in (await session.execute(priced_query(*conditions))).mappings()]


async def priced_usage_by_day(
    *,
    session: AsyncSession,
    user_id: int | None = None,
    start: date | None = None,
    end: date | None = None,
) -> list[dict[str, Any]]:
    """Billable sums per day, application, model and terms (the usage export)."""
    conditions = []
    if user_id is not None:
        conditions.append(UsageRow.user_id == user_id)
    if start is not None:
        conditions.append(UsageRow.day >= start)
    if end is not None:
        conditions.append(UsageRow.day <= end)
    query = priced_query(*conditions, extra=(UsageRow.day,))
    return [dict(row) for row in (await session.execute(query)).mappings()]

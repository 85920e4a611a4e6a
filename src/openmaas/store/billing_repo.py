"""Closing months into invoices: the election, the claim of usage rows, the invoices."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from openmaas.store.tables import InvoiceLineRow, InvoiceRow, MonthCloseRow, UsageRow
from openmaas.store.usage_repo import priced_query


async def is_closed(*, session: AsyncSession, month: str) -> bool:
    return await session.get(MonthCloseRow, month) is not None


async def closed_months(*, session: AsyncSession) -> list[str]:
    return list(await session.scalars(select(MonthCloseRow.month).order_by(MonthCloseRow.month)))


async def elect(*, session: AsyncSession, month: str, closed_by: str) -> bool:
    """Whether this transaction closes ``month``: the first to insert its row does;
    another worker or replica inserting the same month waits, then fails (primary key)."""
    try:
        session.add(MonthCloseRow(month=month, closed_by=closed_by))
        await session.flush()  # the transaction's first write: it holds the month's row
    except IntegrityError:
        await session.rollback()
        return False
    return True


async def unclosed_months_before(*, session: AsyncSession, month: str) -> list[str]:
    """Earlier months with usage not yet invoiced and never closed (close those first)."""
    query = (
        select(UsageRow.month)
        .distinct()
        .where(
            UsageRow.billed_month.is_(None),
            UsageRow.plan_id.is_not(None),
            UsageRow.month < month,
            UsageRow.month.not_in(select(MonthCloseRow.month)),
        )
        .order_by(UsageRow.month)
    )
    return list(await session.scalars(query))


async def claim_usage(*, session: AsyncSession, month: str) -> int:
    """Mark every priced row of ``month`` or earlier not yet invoiced as billed by this
    close. Rows a worker writes after this statement stay unclaimed: the next close
    takes them, as adjustments."""
    result = await session.execute(
        update(UsageRow)
        .where(
            UsageRow.billed_month.is_(None),
            UsageRow.plan_id.is_not(None),
            UsageRow.month <= month,
        )
        .values(billed_month=month)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def claimed_usage(*, session: AsyncSession, month: str) -> list[dict[str, Any]]:
    query = priced_query(UsageRow.billed_month == month, by_month=True)
    return [dict(row) for row in (await session.execute(query)).mappings()]


def add_invoice(*, session: AsyncSession, invoice: InvoiceRow) -> None:
    session.add(invoice)


async def list_invoices(
    *, session: AsyncSession, user_id: int | None = None, month: str | None = None
) -> list[InvoiceRow]:
    query = select(InvoiceRow).order_by(InvoiceRow.month.desc(), InvoiceRow.number)
    if user_id is not None:
        query = query.where(InvoiceRow.user_id == user_id)
    if month is not None:
        query = query.where(InvoiceRow.month == month)
    return list(await session.scalars(query))


async def get_invoice(*, session: AsyncSession, number: str) -> InvoiceRow | None:
    return await session.scalar(select(InvoiceRow).where(InvoiceRow.number == number))


async def all_lines(*, session: AsyncSession) -> Sequence[tuple[InvoiceRow, InvoiceLineRow]]:
    """Every invoice line with its invoice (for the revenue reports)."""
    query = select(InvoiceRow, InvoiceLineRow).join(
        InvoiceLineRow, InvoiceLineRow.invoice_id == InvoiceRow.id
    )
    return [(invoice, line) for invoice, line in (await session.execute(query)).all()]


async def unbilled_usage(
    *, session: AsyncSession, user_id: int | None = None, application_id: int | None = None
) -> int:
    """Priced usage rows not yet on any invoice (a purge must not remove them)."""
    query = select(func.count()).where(
        UsageRow.billed_month.is_(None), UsageRow.plan_id.is_not(None)
    )
    if user_id is not None:
        query = query.where(UsageRow.user_id == user_id)
    if application_id is not None:
        query = query.where(UsageRow.application_id == application_id)
    return int(await session.scalar(query) or 0)


async def purge_usage(
    *, session: AsyncSession, user_id: int | None = None, application_id: int | None = None
) -> int:
    query = delete(UsageRow)
    if user_id is not None:
        query = query.where(UsageRow.user_id == user_id)
    if application_id is not None:
        query = query.where(UsageRow.application_id == application_id)
    result = await session.execute(query)
    return int(result.rowcount or 0)  # type: ignore[attr-defined]

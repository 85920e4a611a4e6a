"""Invoices: each month closes once into one immutable, numbered invoice per account.

Closing a month (the background job at the start of each month, or an admin's command)
happens in one transaction that first inserts the month's row into ``billing_closes``:
of several workers or replicas trying at once, exactly one inserts it, the others find it
taken and do nothing (the database elects, as canary steps are decided by a
compare-and-set in the database). The same transaction claims every priced usage row of
the month not yet invoiced, and of earlier months (usage a worker wrote after their
close: it becomes an adjustment line, never lost and never added to a closed invoice),
then writes the invoices. Database triggers refuse any later change to an invoice.
"""

from __future__ import annotations

import builtins
import logging
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from openmaas.background import Periodic
from openmaas.domain.accounts import Principal
from openmaas.domain.errors import Conflict, NotFound
from openmaas.domain.money import round_line, text
from openmaas.metering.billing import check_month, rounding, this_month
from openmaas.metering.lines import Line, build_lines, total
from openmaas.store import Database, billing_repo, names_repo
from openmaas.store.tables import InvoiceLineRow, InvoiceRow

logger = logging.getLogger("openmaas.billing")


def previous_month(month: str) -> str:
    year, number = (int(part) for part in month.split("-"))
    return f"{year - 1}-12" if number == 1 else f"{year}-{number - 1:02d}"


def invoice_to_dict(row: InvoiceRow, *, lines: bool = True) -> dict[str, Any]:
    def amount(value: Decimal) -> str:  # with the currency's minor digits: "0.50"
        return text(round_line(value, row.currency))

    body: dict[str, Any] = {
        "number": row.number,
        "month": row.month,
        "user_id": row.user_id,
        "username": row.username,
        "currency": row.currency,
        "rounding": rounding(row.currency),
        "subtotal": amount(row.subtotal),
        "total": amount(row.total),
        "closed_at": row.closed_at.isoformat(),
        "status": "closed",
    }
    if lines:
        body["lines"] = [
            {
                "position": line.position,
                "kind": line.kind,
                "usage_month": line.usage_month,
                "application_id": line.application_id,
                "application": line.application,
                "model": line.model,
                "plan": line.plan,
                "rule": line.rule,
                "rule_name": line.rule_name,
                "period_start": line.period_start.isoformat(),
                "period_end": line.period_end.isoformat(),
                "requests": line.requests,
                "input_tokens": line.input_tokens,
                "output_tokens": line.output_tokens,
                "price_per_request": text(line.price_per_request),
                "price_per_1k_input_tokens": text(line.price_per_1k_input_tokens),
                "price_per_1k_output_tokens": text(line.price_per_1k_output_tokens),
                "amount": amount(line.amount),
            }
            for line in row.lines
        ]
    return body


def _line_row(position: int, line: Line, month: str) -> InvoiceLineRow:
    return InvoiceLineRow(
        position=position,
        kind=line.kind,
        usage_month=line.usage_month or month,
        application_id=line.application_id,
        application=line.application,
        model=line.model,
        plan=line.plan,
        rule=line.rule,
        rule_name=line.rule_name,
        period_start=line.period_start,
        period_end=line.period_end,
        requests=line.requests,
        input_tokens=line.input_tokens,
        output_tokens=line.output_tokens,
        price_per_request=line.price_per_request,
        price_per_1k_input_tokens=line.price_per_1k_input_tokens,
        price_per_1k_output_tokens=line.price_per_1k_output_tokens,
        amount=line.amount,
    )


class Invoices:
    def __init__(
        self, db: Database, *, currency: str, check_seconds: float, worker: str = "worker"
    ) -> None:
        self.db = db
        self.currency = currency
        self.worker = worker
        self._job = Periodic(
            "openmaas-invoice-close",
            check_seconds,
            self.close_previous_month,
            logger=logger,
            failure="could not close last month's invoices; the next check retries",
        )

    async def start(self) -> None:
        self._job.start()

    async def stop(self) -> None:
        await self._job.stop()

    async def close_previous_month(self) -> list[str]:
        """The background job: close last month unless it is closed (one cheap read)."""
        month = previous_month(this_month())
        async with self.db.session() as session:
            if await billing_repo.is_closed(session=session, month=month):
                return []
        return await self.close(month, closed_by=f"schedule:{self.worker}")

    async def close(self, month: str, *, closed_by: str) -> list[str]:
        """Close ``month`` (and any earlier month with usage never closed); the numbers
        of the invoices this call wrote ([] when another worker closed it first)."""
        check_month(month)
        if month >= this_month():
            raise Conflict(f"{month} is not over yet", code="month_not_over")
        async with self.db.session() as session:
            earlier = await billing_repo.unclosed_months_before(session=session, month=month)
        numbers: list[str] = []
        for each in [*earlier, month]:
            numbers += await self._close_one(each, closed_by)
        return numbers

    async def _close_one(self, month: str, closed_by: str) -> list[str]:
        async with self.db.session() as session:
            if not await billing_repo.elect(session=session, month=month, closed_by=closed_by):
                return []
            await billing_repo.claim_usage(session=session, month=month)
            rows = await billing_repo.claimed_usage(session=session, month=month)
            applications = await names_repo.application_names(
                session=session, ids=(row["application_id"] for row in rows)
            )
            users = await names_repo.usernames(
                session=session, ids=(row["user_id"] for row in rows)
            )
            lines = build_lines(
                rows, currency=self.currency, applications=applications, closing_month=month
            )
            per_account: dict[int, list[Line]] = defaultdict(list)
            for line in lines:
                per_account[line.user_id].append(line)
            numbers = []
            now = datetime.now(UTC)
            for sequence, (user_id, items) in enumerate(sorted(per_account.items()), start=1):
                # Usage lines first, then adjustments (late usage of earlier months).
                items.sort(key=lambda line: (line.kind != "usage", line.usage_month or ""))
                amount = round_line(total(items), self.currency)
                number = f"{month}-{sequence:04d}"
                billing_repo.add_invoice(
                    session=session,
                    invoice=InvoiceRow(
                        number=number,
                        user_id=user_id,
                        username=users.get(user_id, f"#{user_id}"),
                        month=month,
                        currency=self.currency,
                        subtotal=amount,
                        total=amount,
                        closed_at=now,
                        lines=[
                            _line_row(position, line, month)
                            for position, line in enumerate(items, start=1)
                        ],
                    ),
                )
                numbers.append(number)
            await session.commit()
        logger.info("closed %s: %d invoice(s), by %s", month, len(numbers), closed_by)
        return numbers

    async def list(
        self, actor: Principal, *, user_id: int | None = None, month: str | None = None
    ) -> list[dict[str, Any]]:
        owner = user_id if actor.is_admin else (actor.user_id or -1)
        if month is not None:
            check_month(month)
        async with self.db.session() as session:
            rows = await billing_repo.list_invoices(session=session, user_id=owner, month=month)
        return [invoice_to_dict(row, lines=False) for row in rows]

    async def get(self, actor: Principal, number: str) -> dict[str, Any]:
        async with self.db.session() as session:
            row = await billing_repo.get_invoice(session=session, number=number)
            # Another account's invoice answers exactly like one that does not exist.
            if row is None or (not actor.is_admin and row.user_id != actor.user_id):
                raise NotFound(f"no invoice {number}", code="invoice_not_found")
            return invoice_to_dict(row)

    async def closed_months(self) -> builtins.list[str]:
        async with self.db.session() as session:
            return await billing_repo.closed_months(session=session)

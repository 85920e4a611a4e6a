"""Revenue for the console: closed invoices per month, plan, model and account, and the
running total of the month still open. Amounts stay ``Decimal``; charts get integer
minor units (cents), never floats."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from openmaas.domain.money import ZERO, minor_digits, round_line, text
from openmaas.metering.billing import Billing, this_month
from openmaas.store import Database, billing_repo


def minor_units(amount: Decimal, currency: str) -> int:
    """An amount in the currency's minor unit (cents), for drawing."""
    return int(round_line(amount, currency).scaleb(minor_digits(currency)))


async def revenue(db: Database, billing: Billing) -> dict[str, Any]:
    currency = billing.currency
    async with db.session() as session:
        rows = await billing_repo.all_lines(session=session)
    groups: dict[str, dict[str, Decimal]] = {
        name: defaultdict(lambda: ZERO) for name in ("month", "plan", "model", "account")
    }
    for invoice, invoiced in rows:
        groups["month"][invoice.month] += invoiced.amount
        groups["plan"][invoiced.plan] += invoiced.amount
        groups["model"][invoiced.model] += invoiced.amount
        groups["account"][invoice.username] += invoiced.amount
    month = this_month()
    open_lines, users = await billing.lines(month=month, user_id=None)
    running = sum((line.amount for line in open_lines), ZERO)
    for line in open_lines:
        groups["plan"][line.plan] += line.amount
        groups["model"][line.model] += line.amount
        groups["account"][users.get(line.user_id, f"#{line.user_id}")] += line.amount
    if open_lines:
        groups["month"][f"{month} (open)"] += running

    def table(name: str, *, by_amount: bool) -> list[dict[str, Any]]:
        items = groups[name].items()
        ordered = sorted(items, key=lambda kv: kv[1], reverse=True) if by_amount else sorted(items)
        return [
            {
                "name": key,
                "amount": text(round_line(value, currency)),
                "minor_units": minor_units(value, currency),
            }
            for key, value in ordered
        ]

    return {
        "currency": currency,
        "by_month": table("month", by_amount=False),
        "by_plan": table("plan", by_amount=True),
        "by_model": table("model", by_amount=True),
        "by_account": table("account", by_amount=True),
        "running_total": text(round_line(running, currency)),
    }

"""Monthly statements: a calendar month's (UTC) usage, at the prices it was used at.

Every usage record carries the plan, the rule and the unit prices in force when it was
recorded (``UsageEvent.terms``), so a statement never reprices the past: a plan whose
prices changed, or an application moved to another plan, changes only what comes after.
A statement lists one line per application, model and price period (``lines.py``);
archived applications and accounts keep their lines. The month's statement is the
running total; closing the month turns it into invoices (``invoices.py``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, date, datetime
from typing import Any

from openmaas.domain.accounts import Principal
from openmaas.domain.errors import BadRequest
from openmaas.domain.money import minor_digits, round_line, text
from openmaas.metering.lines import Line, build_lines, total
from openmaas.store import Database, names_repo, usage_repo

_NOT_EXPORTED = ("kind", "usage_month", "period_start", "period_end")
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def check_month(month: str) -> str:
    if not _MONTH.match(month):
        raise BadRequest("month is YYYY-MM", code="invalid_month")
    return month


def this_month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


def rounding(currency: str) -> str:
    return f"half-even per line to {minor_digits(currency)} decimal places"


def money(lines: list[Line], currency: str) -> str:
    """The sum of rounded lines, shown with the currency's minor digits."""
    return text(round_line(total(lines), currency))


def by_application(lines: list[Line], currency: str) -> list[dict[str, Any]]:
    """Per application: what its lines add up to."""
    groups: dict[int | None, list[Line]] = defaultdict(list)
    for line in lines:
        groups[line.application_id].append(line)
    return [
        {
            "application_id": application_id,
            "application": items[0].application,
            "plans": sorted({line.plan for line in items}),
            "billable_requests": sum(line.requests for line in items),
            "input_tokens": sum(line.input_tokens for line in items),
            "output_tokens": sum(line.output_tokens for line in items),
            "total": money(items, currency),
        }
        for application_id, items in groups.items()
    ]


class Billing:
    def __init__(self, db: Database, *, currency: str = "USD") -> None:
        self.db = db
        self.currency = currency

    async def lines(self, *, month: str, user_id: int | None) -> tuple[list[Line], dict[int, str]]:
        async with self.db.session() as session:
            rows = await usage_repo.priced_usage(session=session, month=month, user_id=user_id)
            applications = await names_repo.application_names(
                session=session, ids=(row["application_id"] for row in rows)
            )
            users = await names_repo.usernames(
                session=session, ids=(row["user_id"] for row in rows)
            )
        return build_lines(rows, currency=self.currency, applications=applications), users

    async def statements(
        self, actor: Principal, *, month: str | None = None, user_id: int | None = None
    ) -> dict[str, Any]:
        month = check_month(month or this_month())
        owner = user_id if actor.is_admin else actor.user_id
        if owner is None and not actor.is_admin:
            owner = -1  # a principal without an account has nothing to see
        lines, users = await self.lines(month=month, user_id=owner)
        per_account: dict[int, list[Line]] = defaultdict(list)
        for line in lines:
            per_account[line.user_id].append(line)
        if owner is not None and owner > 0 and owner not in per_account:
            # One account asked for (a developer's own, or an admin's filter): its
            # statement is there, if empty.
            per_account[owner] = []
            if owner not in users:
                async with self.db.session() as session:
                    users |= await names_repo.usernames(session=session, ids=[owner])
        accounts = [
            {
                "user_id": account,
                "username": users.get(account, f"#{account}"),
                "lines": [line.to_dict() for line in items],
                "applications": by_application(items, self.currency),
                "subtotal": money(items, self.currency),
                "total": money(items, self.currency),
            }
            for account, items in sorted(per_account.items())
        ]
        return {
            "month": month,
            "currency": self.currency,
            "rounding": rounding(self.currency),
            "accounts": accounts,
            "total": money(lines, self.currency),
        }

    async def export(
        self,
        actor: Principal,
        *,
        start: date | None = None,
        end: date | None = None,
        user_id: int | None = None,
    ) -> list[dict[str, Any]]:
        """Billable usage by day, application, model and terms, each row priced and
        rounded like a line (a month's rows may differ from its statement by rounding)."""
        if start and end and start > end:
            raise BadRequest("start is after end", code="invalid_range")
        owner = user_id if actor.is_admin else (actor.user_id or -1)
        async with self.db.session() as session:
            rows = await usage_repo.priced_usage_by_day(
                session=session, user_id=owner, start=start, end=end
            )
            applications = await names_repo.application_names(
                session=session, ids=(row["application_id"] for row in rows)
            )
        result = []
        for row in rows:
            priced = build_lines([row], currency=self.currency, applications=applications)
            if not priced:
                continue  # nothing billable that day (only refused requests)
            line = priced[0]
            result.append(
                {
                    "day": row["day"].isoformat(),
                    "user_id": line.user_id,
                    **{k: v for k, v in line.to_dict().items() if k not in _NOT_EXPORTED},
                    "currency": self.currency,
                }
            )
        return result

"""Monthly statements: usage of a calendar month (UTC) priced with each application's plan.

Requests are billed when they succeeded (status below 400); tokens whenever they were
counted. Prices are the plan's at the time the statement is computed: a plan changed in
the middle of a month prices the whole month at the new rates.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from openmaas.domain.accounts import Principal
from openmaas.domain.errors import BadRequest
from openmaas.store import Database, access_repo, usage_repo

_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def _money(value: float) -> float:
    return round(value, 6)


class Billing:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def statements(
        self, actor: Principal, *, month: str | None = None, user_id: int | None = None
    ) -> dict[str, Any]:
        month = month or datetime.now(UTC).strftime("%Y-%m")
        if not _MONTH.match(month):
            raise BadRequest("month is YYYY-MM", code="invalid_month")
        owner = user_id if actor.is_admin else actor.user_id
        async with self.db.session() as session:
            usage = await usage_repo.summarize(
                session=session, group_by=["application"], user_id=owner, month=month
            )
            applications = {
                app.id: (app, plan, user)
                for app, plan, user in await access_repo.list_applications(
                    session=session, user_id=owner
                )
            }
        by_application = {row["application"]: row for row in usage}
        accounts: dict[int, dict[str, Any]] = defaultdict(
            lambda: {"applications": [], "total": 0.0}
        )
        for app_id, (app, plan, user) in applications.items():
            row = by_application.get(app_id, {})
            requests = int(row.get("requests") or 0) - int(row.get("errors") or 0)
            input_tokens = int(row.get("input_tokens") or 0)
            output_tokens = int(row.get("output_tokens") or 0)
            charges = {
                "requests": _money(requests * plan.price_per_request),
                "input_tokens": _money(input_tokens / 1000 * plan.price_per_1k_input_tokens),
                "output_tokens": _money(output_tokens / 1000 * plan.price_per_1k_output_tokens),
            }
            total = _money(sum(charges.values()))
            account = accounts[user.id]
            account.update(user_id=user.id, username=user.username)
            account["applications"].append(
                {
                    "application_id": app_id,
                    "application": app.name,
                    "plan": plan.name,
                    "billable_requests": requests,
                    "input_tokens": input_tokens,
                    "output_tokens": output_tokens,
                    "prices": {
                        "per_request": plan.price_per_request,
                        "per_1k_input_tokens": plan.price_per_1k_input_tokens,
                        "per_1k_output_tokens": plan.price_per_1k_output_tokens,
                    },
                    "charges": charges,
                    "total": total,
                }
            )
            account["total"] = _money(account["total"] + total)
        statements = sorted(accounts.values(), key=lambda account: account["user_id"])
        return {
            "month": month,
            "currency": "USD",
            "accounts": statements,
            "total": _money(sum(account["total"] for account in statements)),
        }

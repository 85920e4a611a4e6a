"""Monthly statements: usage of a calendar month (UTC) priced with each application's plan.

Requests are billed when they succeeded (status below 400); tokens whenever they were
counted. Each model's usage is priced with the terms the plan gives that model (a rule's
prices, else the plan's: ``Plan.terms_for``). Prices are the plan's at the time the
statement is computed: a plan changed in the middle of a month prices the whole month at
the new rates.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from openmaas.domain.accounts import Principal
from openmaas.domain.errors import BadRequest
from openmaas.domain.plans import Plan, PlanRule
from openmaas.store import Database, access_repo, usage_repo

_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def _money(value: float) -> float:
    return round(value, 6)


def _pricing(row: Any) -> Plan:
    """The plan's prices and rules, enough to price each model's usage."""
    return Plan(
        id=row.id,
        name=row.name,
        price_per_1k_input_tokens=row.price_per_1k_input_tokens,
        price_per_1k_output_tokens=row.price_per_1k_output_tokens,
        price_per_request=row.price_per_request,
        rules=tuple(PlanRule.from_dict(rule) for rule in row.rules or ()),
    )


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
                session=session, group_by=["application", "model"], user_id=owner, month=month
            )
            applications = {
                app.id: (app, plan, user)
                for app, plan, user in await access_repo.list_applications(
                    session=session, user_id=owner
                )
            }
        by_application: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for row in usage:
            by_application[row["application"]].append(row)
        accounts: dict[int, dict[str, Any]] = defaultdict(
            lambda: {"applications": [], "total": 0.0}
        )
        for app_id, (app, plan, user) in applications.items():
            terms = _pricing(plan)
            requests = input_tokens = output_tokens = 0
            charged = {"requests": 0.0, "input_tokens": 0.0, "output_tokens": 0.0}
            for row in by_application.get(app_id, []):
                prices = terms.terms_for(str(row["model"]))
                billable = int(row.get("requests") or 0) - int(row.get("errors") or 0)
                tokens_in = int(row.get("input_tokens") or 0)
                tokens_out = int(row.get("output_tokens") or 0)
                requests += billable
                input_tokens += tokens_in
                output_tokens += tokens_out
                charged["requests"] += billable * prices.price_per_request
                charged["input_tokens"] += tokens_in / 1000 * prices.price_per_1k_input_tokens
                charged["output_tokens"] += tokens_out / 1000 * prices.price_per_1k_output_tokens
            charges = {name: _money(value) for name, value in charged.items()}
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

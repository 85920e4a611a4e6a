"""Bill lines: one per account, application, model and price period.

A price period is a stretch of usage recorded under the same terms (plan, rule and unit
prices); a month in which a plan's prices changed, or an application moved to another
plan, has one line per period, each at its own prices. Each line is rounded on its own
(``openmaas.domain.money``); totals add the rounded lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from openmaas.domain.money import ZERO, line_amount, text


@dataclass(frozen=True, slots=True)
class Line:
    user_id: int
    application_id: int | None
    application: str
    model: str
    plan: str
    rule: int | None
    rule_name: str | None
    period_start: datetime
    period_end: datetime
    requests: int
    input_tokens: int
    output_tokens: int
    price_per_request: Decimal
    price_per_1k_input_tokens: Decimal
    price_per_1k_output_tokens: Decimal
    amount: Decimal
    kind: str = "usage"  # or "adjustment": usage of an earlier, closed month
    usage_month: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "usage_month": self.usage_month,
            "application_id": self.application_id,
            "application": self.application,
            "model": self.model,
            "plan": self.plan,
            "rule": self.rule,
            "rule_name": self.rule_name,
            "period_start": self.period_start.isoformat(),
            "period_end": self.period_end.isoformat(),
            "requests": self.requests,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "price_per_request": text(self.price_per_request),
            "price_per_1k_input_tokens": text(self.price_per_1k_input_tokens),
            "price_per_1k_output_tokens": text(self.price_per_1k_output_tokens),
            "amount": text(self.amount),
        }


def build_lines(
    rows: Iterable[Mapping[str, Any]],
    *,
    currency: str,
    applications: Mapping[int, str],
    closing_month: str | None = None,
) -> list[Line]:
    """Lines from priced usage sums; with ``closing_month``, rows of other months are
    adjustments (late usage of a month already closed)."""
    lines = []
    for row in rows:
        requests = int(row["requests"] or 0)
        input_tokens = int(row["input_tokens"] or 0)
        output_tokens = int(row["output_tokens"] or 0)
        if not (requests or input_tokens or output_tokens):
            continue
        prices = {
            name: row[name] if row[name] is not None else ZERO
            for name in (
                "price_per_request",
                "price_per_1k_input_tokens",
                "price_per_1k_output_tokens",
            )
        }
        month = row.get("month")
        late = closing_month is not None and month is not None and month != closing_month
        application_id = row["application_id"]
        lines.append(
            Line(
                user_id=int(row["user_id"]),
                application_id=application_id,
                application=applications.get(application_id, f"#{application_id}"),
                model=str(row["model"]),
                plan=str(row["plan"]),
                rule=row["rule"],
                rule_name=row["rule_name"],
                period_start=row["period_start"],
                period_end=row["period_end"],
                requests=requests,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                amount=line_amount(
                    requests=requests,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    currency=currency,
                    **prices,
                ),
                kind="adjustment" if late else "usage",
                usage_month=month,
                **prices,
            )
        )
    return lines


def total(lines: Iterable[Line]) -> Decimal:
    return sum((line.amount for line in lines), ZERO)

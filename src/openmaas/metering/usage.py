"""Reading usage: sums by application, model, day and more; top consumers; CSV export.

Developers see only rows of their own account; admins see every row.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import date
from typing import Any

from openmaas.domain.accounts import Principal
from openmaas.domain.errors import BadRequest
from openmaas.store import Database, usage_repo

DIMENSIONS = tuple(usage_repo.DIMENSIONS)
METRICS = (
    "requests",
    "errors",
    "error_rate",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "latency_ms_avg",
    "latency_ms_max",
)


def parse_group_by(raw: str | None, default: Sequence[str]) -> list[str]:
    names = [part.strip() for part in (raw or "").split(",") if part.strip()] or list(default)
    unknown = [name for name in names if name not in usage_repo.DIMENSIONS]
    if unknown:
        raise BadRequest(
            f"cannot group by {', '.join(unknown)}; choose from {', '.join(DIMENSIONS)}",
            code="invalid_group_by",
        )
    return list(dict.fromkeys(names))


def _finish(row: dict[str, Any]) -> dict[str, Any]:
    requests = int(row.pop("requests") or 0)
    errors = int(row.pop("errors") or 0)
    input_tokens = int(row.pop("input_tokens") or 0)
    output_tokens = int(row.pop("output_tokens") or 0)
    latency_sum = float(row.pop("latency_ms_sum") or 0.0)
    latency_max = float(row.pop("latency_ms_max") or 0.0)
    for name, value in list(row.items()):
        if isinstance(value, date):
            row[name] = value.isoformat()
    return {
        **row,
        "requests": requests,
        "errors": errors,
        "error_rate": round(errors / requests, 6) if requests else 0.0,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "latency_ms_avg": round(latency_sum / requests, 3) if requests else 0.0,
        "latency_ms_max": round(latency_max, 3),
    }


class UsageQueries:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def summary(
        self,
        actor: Principal,
        *,
        group_by: Sequence[str],
        start: date | None = None,
        end: date | None = None,
        user_id: int | None = None,
        application_id: int | None = None,
        model: str | None = None,
        order_by: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        if start and end and start > end:
            raise BadRequest("start is after end", code="invalid_range")
        # A developer's filter on user is always their own account, whatever they asked.
        owner = user_id if actor.is_admin else actor.user_id
        if owner is None and not actor.is_admin:
            return []
        async with self.db.session() as session:
            rows = await usage_repo.summarize(
                session=session,
                group_by=group_by,
                user_id=owner,
                application_id=application_id,
                model=model,
                start=start,
                end=end,
                order_by=order_by,
                limit=limit,
            )
        return [_finish(row) for row in rows]


def to_csv(rows: Sequence[dict[str, Any]], group_by: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*group_by, *METRICS], extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return buffer.getvalue()

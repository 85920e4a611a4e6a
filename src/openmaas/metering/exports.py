"""Bills as files: an invoice as CSV, usage by day, application and model as CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

INVOICE_COLUMNS = (
    "position",
    "kind",
    "usage_month",
    "application_id",
    "application",
    "model",
    "plan",
    "rule_name",
    "period_start",
    "period_end",
    "requests",
    "input_tokens",
    "output_tokens",
    "price_per_request",
    "price_per_1k_input_tokens",
    "price_per_1k_output_tokens",
    "amount",
)
USAGE_COLUMNS = (
    "day",
    "user_id",
    "application_id",
    "application",
    "model",
    "plan",
    "rule_name",
    "requests",
    "input_tokens",
    "output_tokens",
    "price_per_request",
    "price_per_1k_input_tokens",
    "price_per_1k_output_tokens",
    "amount",
    "currency",
)


def _csv(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    return buffer.getvalue()


def invoice_csv(invoice: dict[str, Any]) -> str:
    """The lines, then the subtotal and total rows (amounts as exact decimal text)."""
    text = _csv(INVOICE_COLUMNS, invoice["lines"])
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["subtotal", *[""] * (len(INVOICE_COLUMNS) - 2), invoice["subtotal"]])
    writer.writerow(["total", *[""] * (len(INVOICE_COLUMNS) - 2), invoice["total"]])
    return text + buffer.getvalue()


def usage_csv(rows: Sequence[dict[str, Any]]) -> str:
    return _csv(USAGE_COLUMNS, rows)

"""One inference request as metering sees it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from openmaas.domain.plans import PlanTerms


@dataclass(frozen=True, slots=True)
class UsageEvent:
    at: datetime
    user_id: int | None
    application_id: int | None
    key_id: int | None
    model: str
    version: int | None
    endpoint: str | None
    protocol: str  # "predict" | "v2" | "openai"
    status: int
    latency_ms: float
    input_tokens: int = 0
    output_tokens: int = 0
    # The plan's terms for the model when the request ran: its prices are fixed here.
    terms: PlanTerms | None = None

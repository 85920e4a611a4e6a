"""Application plans (3scale's term): which models, how fast, how much, at what price."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from fnmatch import translate
from typing import Any

# The request limits of a plan and the window each one counts over, shortest first:
# the gate checks them in this order so a burst refused per second never eats the day.
REQUEST_WINDOWS: tuple[tuple[str, str], ...] = (
    ("requests_per_second", "second"),
    ("requests_per_minute", "minute"),
    ("requests_per_hour", "hour"),
    ("requests_per_day", "day"),
)
TOKEN_WINDOWS: tuple[tuple[str, str], ...] = (
    ("tokens_per_minute", "minute"),
    ("tokens_per_day", "day"),
)
LIMIT_FIELDS = (*(name for name, _ in REQUEST_WINDOWS + TOKEN_WINDOWS), "monthly_token_quota")
ALL_MODELS = "*"


@dataclass(frozen=True, slots=True)
class Plan:
    id: int
    name: str
    description: str = ""
    # Model names or shell-style patterns ("llama-*"); ["*"] is every model, [] none.
    models: tuple[str, ...] = (ALL_MODELS,)
    requests_per_second: int | None = None
    requests_per_minute: int | None = None
    requests_per_hour: int | None = None
    requests_per_day: int | None = None
    tokens_per_minute: int | None = None
    tokens_per_day: int | None = None
    monthly_token_quota: int | None = None
    price_per_1k_input_tokens: float = 0.0
    price_per_1k_output_tokens: float = 0.0
    price_per_request: float = 0.0
    approval_required: bool = False
    created_at: datetime | None = None
    _pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.models and ALL_MODELS not in self.models:
            regex = "|".join(f"(?:{translate(p)})" for p in self.models)
            object.__setattr__(self, "_pattern", re.compile(regex))

    def allows(self, model_name: str) -> bool:
        if not self.models:
            return False
        if self._pattern is None:
            return True
        return self._pattern.match(model_name) is not None

    def limit(self, name: str) -> int | None:
        value: int | None = getattr(self, name)
        return value

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "models": list(self.models),
            **{name: getattr(self, name) for name in LIMIT_FIELDS},
            "price_per_1k_input_tokens": self.price_per_1k_input_tokens,
            "price_per_1k_output_tokens": self.price_per_1k_output_tokens,
            "price_per_request": self.price_per_request,
            "approval_required": self.approval_required,
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }

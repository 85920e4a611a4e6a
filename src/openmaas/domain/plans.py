"""Application plans (3scale's term): which models, how fast, how much, at what price.

A plan has defaults (its limits and prices) and an ordered list of rules. A rule names
models (names or shell patterns) and any limits and prices of its own, which replace the
defaults for the models it matches; the first matching rule wins. ``Plan.terms_for``
answers what is in force for one model, without I/O, cached per model name.

A limit the plan sets is counted once per application for every model that falls back
to it; a limit a rule sets is counted per application for the models of that rule
together, apart from the plan's.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import IntEnum
from fnmatch import translate
from typing import Any

from openmaas.domain.money import ZERO, price, text


class Metric(IntEnum):
    """What a limit counts (the values travel to the Redis script)."""

    REQUESTS = 0
    INPUT_TOKENS = 1
    OUTPUT_TOKENS = 2
    TOTAL_TOKENS = 3


# Every limit a plan or a rule may set: its name, what it counts and over which window.
# Request limits come first, shortest window first: a refusal names the shortest window
# that is full, the one that frees up soonest.
LIMITS: tuple[tuple[str, Metric, str], ...] = (
    ("requests_per_second", Metric.REQUESTS, "second"),
    ("requests_per_minute", Metric.REQUESTS, "minute"),
    ("requests_per_hour", Metric.REQUESTS, "hour"),
    ("requests_per_day", Metric.REQUESTS, "day"),
    ("input_tokens_per_minute", Metric.INPUT_TOKENS, "minute"),
    ("input_tokens_per_hour", Metric.INPUT_TOKENS, "hour"),
    ("input_tokens_per_day", Metric.INPUT_TOKENS, "day"),
    ("output_tokens_per_minute", Metric.OUTPUT_TOKENS, "minute"),
    ("output_tokens_per_hour", Metric.OUTPUT_TOKENS, "hour"),
    ("output_tokens_per_day", Metric.OUTPUT_TOKENS, "day"),
    ("tokens_per_minute", Metric.TOTAL_TOKENS, "minute"),
    ("tokens_per_hour", Metric.TOTAL_TOKENS, "hour"),
    ("tokens_per_day", Metric.TOTAL_TOKENS, "day"),
    ("monthly_token_quota", Metric.TOTAL_TOKENS, "month"),
)
LIMIT_FIELDS: tuple[str, ...] = tuple(name for name, _metric, _window in LIMITS)
PRICE_FIELDS: tuple[str, ...] = (
    "price_per_1k_input_tokens",
    "price_per_1k_output_tokens",
    "price_per_request",
)
ALL_MODELS = "*"
PLAN_SCOPE = "plan"
# Terms are cached per model name; past this many names the cache starts again.
_MAX_CACHED_TERMS = 10_000


def _matcher(patterns: Sequence[str]) -> re.Pattern[str] | None:
    """One regular expression for the patterns; None when they match every name."""
    if ALL_MODELS in patterns:
        return None
    return re.compile("|".join(f"(?:{translate(p)})" for p in patterns) or r"(?!)")


@dataclass(frozen=True, slots=True)
class Limit:
    """One limit in force: what it counts, over which window, and which counter."""

    name: str  # "tokens_per_minute", ...
    metric: Metric
    window: str  # "second" | "minute" | "hour" | "day" | "month"
    amount: int
    scope: str  # PLAN_SCOPE, or the scope of the rule that set it

    @property
    def counts_tokens(self) -> bool:
        return self.metric is not Metric.REQUESTS


@dataclass(frozen=True, slots=True)
class PlanRule:
    """Limits and prices of their own for some of a plan's models; None: the plan's."""

    models: tuple[str, ...]
    name: str = ""
    limits: Mapping[str, int] = field(default_factory=dict)
    prices: Mapping[str, Decimal] = field(default_factory=dict)
    _pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pattern", _matcher(self.models))
        exact = {name: price(value, name=name) for name, value in self.prices.items()}
        object.__setattr__(self, "prices", exact)

    def matches(self, model_name: str) -> bool:
        if not self.models:
            return False
        return self._pattern is None or self._pattern.match(model_name) is not None

    @property
    def scope(self) -> str:
        """Names the rule's counters: stable while its model list stays the same."""
        digest = hashlib.sha256("\n".join(self.models).encode()).hexdigest()[:12]
        return f"rule-{digest}"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PlanRule:
        return cls(
            models=tuple(data.get("models") or ()),
            name=str(data.get("name") or ""),
            limits={k: int(data[k]) for k in LIMIT_FIELDS if data.get(k) is not None},
            prices={k: price(data[k], name=k) for k in PRICE_FIELDS if data.get(k) is not None},
        )

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"models": list(self.models)}
        if self.name:
            body["name"] = self.name
        body.update(self.limits)
        body.update({name: text(value) for name, value in self.prices.items()})
        return body


@dataclass(frozen=True, slots=True)
class PlanTerms:
    """What applies to one model under one plan: its limits, its prices, whose they are.

    ``rule`` is the index of the rule that matched (``rule_name`` its name, if it has
    one), or None when the plan's defaults apply.
    """

    plan: str
    plan_id: int
    rule: int | None
    rule_name: str | None
    limits: tuple[Limit, ...]
    price_per_1k_input_tokens: Decimal
    price_per_1k_output_tokens: Decimal
    price_per_request: Decimal
    request_limits: tuple[Limit, ...] = field(default=(), compare=False)
    token_limits: tuple[Limit, ...] = field(default=(), compare=False)
    # What a usage record keeps of these terms: plan, rule and unit prices.
    billing_key: tuple[Any, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "billing_key",
            (
                self.plan_id,
                self.plan,
                self.rule,
                self.rule_name,
                self.price_per_request,
                self.price_per_1k_input_tokens,
                self.price_per_1k_output_tokens,
            ),
        )
        object.__setattr__(
            self, "request_limits", tuple(x for x in self.limits if not x.counts_tokens)
        )
        object.__setattr__(self, "token_limits", tuple(x for x in self.limits if x.counts_tokens))

    def limit(self, name: str) -> int | None:
        for item in self.limits:
            if item.name == name:
                return item.amount
        return None

    @property
    def caps_output(self) -> bool:
        """Whether a limit bounds what a model may generate (output or total tokens)."""
        return any(
            x.metric in (Metric.OUTPUT_TOKENS, Metric.TOTAL_TOKENS) for x in self.token_limits
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan,
            "rule": self.rule,
            "rule_name": self.rule_name,
            "limits": {item.name: item.amount for item in self.limits},
            "price_per_1k_input_tokens": text(self.price_per_1k_input_tokens),
            "price_per_1k_output_tokens": text(self.price_per_1k_output_tokens),
            "price_per_request": text(self.price_per_request),
        }


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
    input_tokens_per_minute: int | None = None
    input_tokens_per_hour: int | None = None
    input_tokens_per_day: int | None = None
    output_tokens_per_minute: int | None = None
    output_tokens_per_hour: int | None = None
    output_tokens_per_day: int | None = None
    tokens_per_minute: int | None = None
    tokens_per_hour: int | None = None
    tokens_per_day: int | None = None
    monthly_token_quota: int | None = None
    # Exact prices (``Decimal``), in the platform's currency.
    price_per_1k_input_tokens: Decimal = ZERO
    price_per_1k_output_tokens: Decimal = ZERO
    price_per_request: Decimal = ZERO
    approval_required: bool = False
    rules: tuple[PlanRule, ...] = ()
    created_at: datetime | None = None
    _pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)
    _terms: dict[str, PlanTerms] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pattern", _matcher(self.models))
        for name in PRICE_FIELDS:  # whatever a caller gave, kept exact
            object.__setattr__(self, name, price(getattr(self, name) or 0, name=name))

    def allows(self, model_name: str) -> bool:
        if not self.models:
            return False
        if self._pattern is None:
            return True
        return self._pattern.match(model_name) is not None

    def limit(self, name: str) -> int | None:
        value: int | None = getattr(self, name)
        return value

    def rule_for(self, model_name: str) -> int | None:
        """The index of the first rule matching the model, or None."""
        for index, rule in enumerate(self.rules):
            if rule.matches(model_name):
                return index
        return None

    def terms_for(self, model_name: str) -> PlanTerms:
        """The limits and prices in force for ``model_name`` (cached, no I/O)."""
        terms = self._terms.get(model_name)
        if terms is None:
            if len(self._terms) >= _MAX_CACHED_TERMS:
                self._terms.clear()
            terms = self._terms[model_name] = self._compute_terms(self.rule_for(model_name))
        return terms

    def _compute_terms(self, index: int | None) -> PlanTerms:
        rule = self.rules[index] if index is not None else None
        limits = []
        for name, metric, window in LIMITS:
            if rule is not None and name in rule.limits:
                limits.append(Limit(name, metric, window, rule.limits[name], rule.scope))
            elif (amount := self.limit(name)) is not None:
                limits.append(Limit(name, metric, window, amount, PLAN_SCOPE))
        prices = {name: getattr(self, name) for name in PRICE_FIELDS}
        if rule is not None:
            prices.update(rule.prices)
        return PlanTerms(
            plan=self.name,
            plan_id=self.id,
            rule=index,
            rule_name=(rule.name or None) if rule is not None else None,
            limits=tuple(limits),
            **prices,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "models": list(self.models),
            **{name: getattr(self, name) for name in LIMIT_FIELDS},
            **{name: text(getattr(self, name)) for name in PRICE_FIELDS},
            "approval_required": self.approval_required,
            "rules": [rule.to_dict() for rule in self.rules],
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }

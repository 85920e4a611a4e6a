"""Routes compiled for the hot path: which destinations a request goes to, in which order.

Matching reads the request's headers, query parameters and path; nothing is parsed or
compiled per request. Choosing among the matching rules:

* no matching rule has a ``weight``: the first matching rule serves;
* otherwise each weighted rule takes its weight in percent of the matching traffic; what
  the weights leave (under 100) goes to the first unweighted matching rule, else to the
  fallback, else is shared by the weighted rules in proportion;
* with an enabled canary, the first matching rule is the stable one and the second the
  canary, and the route's current split decides between them.

A rule's destination is tried ``1 + retries`` times, then the fallback once.
"""

from __future__ import annotations

import fnmatch
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from openmaas.domain.routes import RouteRule, RouteSpec


@dataclass(frozen=True, slots=True)
class Attempt:
    destination: str
    tries: int
    timeout_s: float | None
    canary: bool = False  # its outcome counts towards the canary analysis


@dataclass(slots=True)
class _CompiledRule:
    rule: RouteRule
    path: re.Pattern[str] | None
    headers: tuple[tuple[str, str], ...]
    query: tuple[tuple[str, str], ...]

    def matches(self, headers: Mapping[str, str], query: Mapping[str, str], path: str) -> bool:
        for name, value in self.headers:
            if headers.get(name) != value:
                return False
        for name, value in self.query:
            if query.get(name) != value:
                return False
        return self.path is None or self.path.match(path) is not None


@dataclass
class CompiledRoute:
    spec: RouteSpec
    revision: int
    canary_weight: int | None  # the canary's current share in percent, when a canary runs
    canary_state: str | None
    conditions: list[dict[str, Any]] = field(default_factory=list)
    rules: list[_CompiledRule] = field(default_factory=list)
    rng: random.Random = field(default_factory=random.Random)

    reads_query: bool = False

    def __post_init__(self) -> None:
        self.rules = [_compile(rule) for rule in self.spec.rules]
        self.reads_query = any(rule.query for rule in self.rules)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def canary_running(self) -> bool:
        canary = self.spec.canary
        return bool(canary and canary.enabled and self.canary_weight is not None)

    def attempts(
        self, headers: Mapping[str, str], query: Mapping[str, str], path: str
    ) -> list[Attempt]:
        """The destinations to try for one request, in order; empty when nothing fits."""
        matching = [c.rule for c in self.rules if c.matches(headers, query, path)]
        chosen, canary = self._choose(matching)
        plan: list[Attempt] = []
        if chosen is not None:
            plan.append(Attempt(chosen.destination, 1 + chosen.retries, chosen.timeout_s, canary))
        fallback = self.spec.fallback
        if fallback and (chosen is None or chosen.destination != fallback):
            timeout = chosen.timeout_s if chosen is not None else None
            plan.append(Attempt(fallback, 1, timeout))
        return plan

    def _choose(self, matching: list[RouteRule]) -> tuple[RouteRule | None, bool]:
        if not matching:
            return None, False
        if self.canary_running and len(matching) >= 2:
            share = self.canary_weight or 0
            to_canary = share > 0 and self.rng.random() * 100 < share
            return (matching[1], True) if to_canary else (matching[0], False)
        weighted = [rule for rule in matching if rule.weight is not None]
        if not weighted:
            return matching[0], False
        total = sum(rule.weight or 0 for rule in weighted)
        rest = next((rule for rule in matching if rule.weight is None), None)
        draw = self.rng.random() * 100
        if total < 100 and (rest is not None or self.spec.fallback):
            for rule in weighted:
                draw -= rule.weight or 0
                if draw < 0:
                    return rule, False
            return rest, False  # None: the fallback takes the rest
        if total == 0:
            return matching[0], False
        draw = draw / 100 * total
        for rule in weighted:
            draw -= rule.weight or 0
            if draw < 0:
                return rule, False
        return weighted[-1], False


def _compile(rule: RouteRule) -> _CompiledRule:
    pattern = re.compile(fnmatch.translate(rule.match.path)) if rule.match.path else None
    return _CompiledRule(
        rule,
        pattern,
        tuple(rule.match.headers.items()),
        tuple(rule.match.query_params.items()),
    )


class RouteTable:
    """Route name → compiled route; replaced wholesale entry by entry by the sync."""

    def __init__(self) -> None:
        self.by_name: dict[str, CompiledRoute] = {}

    def get(self, name: str) -> CompiledRoute | None:
        return self.by_name.get(name)

"""Routes compiled for the hot path: which destinations a request goes to, in which order.

Matching reads the request's headers, query parameters and path; nothing is parsed or
compiled per request. Choosing among the matching rules:

* no matching rule has a ``weight``: the first matching rule serves;
* the route's weights add up to 100 or more (a split, as in seed 003's A/B test, 80 and
  20): the matching weighted rules share the traffic in proportion to their weights, so
  a request that matches one of them goes there;
* they add up to less (an experiment, as in seed 003's multi-condition example, 5): each
  matching weighted rule takes its weight in percent of the matching traffic; the rest
  goes to the first unweighted matching rule, else to the fallback, else is shared by
  the weighted rules in proportion;
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

from openmaas.domain.routes import DEFAULT_NAMESPACE, RouteRule, RouteSpec


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
    has_path_rules: bool = False
    splits: bool = False
    """The weights of all the rules add up to 100 or more: they divide, never leave a rest."""

    def __post_init__(self) -> None:
        self.rules = [_compile(rule) for rule in self.spec.rules]
        self.splits = sum(rule.weight or 0 for rule in self.spec.rules) >= 100
        self.reads_query = any(rule.query for rule in self.rules)
        self.has_path_rules = any(rule.path is not None for rule in self.rules)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def label(self) -> str:
        """The route as metrics and logs name it: ``name``, or ``namespace/name``."""
        if self.spec.namespace == DEFAULT_NAMESPACE:
            return self.spec.name
        return f"{self.spec.namespace}/{self.spec.name}"

    def serves_path(self, path: str) -> bool:
        return any(rule.path is not None and rule.path.match(path) for rule in self.rules)

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
        if not self.splits and total < 100 and (rest is not None or self.spec.fallback):
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
    """Routes by namespace and name, compiled; changed entry by entry by the sync.

    Routes of the default namespace sit in a dictionary of their own, so the common
    lookup is one dictionary read; ``namespaced`` and ``by_path`` say whether the hot
    path needs to look any further.
    """

    def __init__(self) -> None:
        self.default: dict[str, CompiledRoute] = {}
        self.others: dict[tuple[str, str], CompiledRoute] = {}
        self.namespaced = False
        """Some route lives outside the default namespace: requests may name one."""
        self.by_path: list[CompiledRoute] = []
        """Routes with a ``path`` rule, which may serve a request that names none of them."""

    def get(self, name: str, namespace: str | None = None) -> CompiledRoute | None:
        if namespace is None or namespace == DEFAULT_NAMESPACE:
            return self.default.get(name)
        return self.others.get((namespace, name))

    def routes(self) -> list[CompiledRoute]:
        """Every route, in namespace and name order."""
        found = [*self.default.values(), *self.others.values()]
        return sorted(found, key=lambda route: (route.spec.namespace, route.name))

    def __len__(self) -> int:
        return len(self.default) + len(self.others)

    def put(self, route: CompiledRoute) -> None:
        if route.spec.namespace == DEFAULT_NAMESPACE:
            self.default[route.name] = route
        else:
            self.others[(route.spec.namespace, route.name)] = route
        self._reindex()

    def remove(self, namespace: str, name: str) -> None:
        if namespace == DEFAULT_NAMESPACE:
            self.default.pop(name, None)
        else:
            self.others.pop((namespace, name), None)
        self._reindex()

    def keys(self) -> set[tuple[str, str]]:
        return {(route.spec.namespace, route.name) for route in self.routes()}

    def for_path(self, path: str, namespace: str | None) -> CompiledRoute | None:
        """The first route (by name) of the namespace with a ``path`` rule matching ``path``.

        Seed 003's canary example matches ``/v1/models/production/*``: a request to
        ``/v1/models/production/infer`` reaches that route though it names no route.
        """
        wanted = namespace or DEFAULT_NAMESPACE
        for route in self.by_path:
            if route.spec.namespace == wanted and route.serves_path(path):
                return route
        return None

    def _reindex(self) -> None:
        self.namespaced = bool(self.others)
        self.by_path = [route for route in self.routes() if route.has_path_rules]

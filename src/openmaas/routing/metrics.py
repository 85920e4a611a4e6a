"""Prometheus counters per route and destination, and this worker's running totals."""

from __future__ import annotations

from collections import Counter as Tally
from typing import Any

from prometheus_client import Counter

from openmaas.serving.metrics import ServingMetrics, remove_series


class RouteMetrics:
    def __init__(self, serving: ServingMetrics) -> None:
        self.serving = serving
        registry = serving.registry
        self.requests = Counter(
            "openmaas_route_requests",
            "Attempts made through a ModelRoute, by route, destination and outcome.",
            ("route", "destination", "outcome"),
            registry=registry,
        )
        self._tally: Tally[tuple[str, str, bool]] = Tally()
        # Labelled children looked up once: ``labels()`` takes a lock and builds a key.
        self._children: dict[tuple[str, str, bool], Any] = {}

    def outcome(self, route: str, destination: str, ok: bool) -> None:
        key = (route, destination, ok)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.requests.labels(
                route, destination, "success" if ok else "failure"
            )
        child.inc()
        self._tally[key] += 1

    def forget(self, route: str) -> None:
        """Remove a deleted route's series and totals."""
        remove_series(self.requests, ("route", "destination", "outcome"), route=route)
        self.serving.forget_model(route)
        for key in [key for key in self._children if key[0] == route]:
            del self._children[key]
            self._tally.pop(key, None)

    def counts(self, route: str, destinations: list[str]) -> list[dict[str, object]]:
        """Attempts and failures per destination, as seen by this worker since it started."""
        return [
            {
                "name": name,
                "requests": self._tally[(route, name, True)] + self._tally[(route, name, False)],
                "failures": self._tally[(route, name, False)],
            }
            for name in dict.fromkeys(destinations)
        ]

"""The ModelRoute resource (seed 003): its specification, read from the seed's document shape.

``parse_route`` turns a document (parsed JSON or YAML) into a ``RouteSpec`` and refuses a
bad one with a ``Unprocessable`` naming the field, e.g. ``spec.routes[1].weight``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from openmaas.domain.errors import Unprocessable

API_VERSION = "networking.matrixinfer.ai/v1alpha1"
KIND = "ModelRoute"
DEFAULT_NAMESPACE = "default"
"""The namespace of a route whose document names none, and of a request that names none."""
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True, slots=True)
class Match:
    headers: dict[str, str] = field(default_factory=dict)
    query_params: dict[str, str] = field(default_factory=dict)
    path: str | None = None


@dataclass(frozen=True, slots=True)
class RouteRule:
    match: Match
    destination: str  # what our serving layer serves: an endpoint, or name, name/3, name@alias
    weight: int | None = None  # percent of the matching traffic
    timeout_s: float | None = None
    retries: int = 0


@dataclass(frozen=True, slots=True)
class Canary:
    enabled: bool
    stable: int
    canary: int
    threshold: int  # lowest success rate (percent) that lets the canary grow
    interval_s: float
    min_requests: int  # fewer canary requests in an interval decide nothing


@dataclass(frozen=True, slots=True)
class RouteSpec:
    name: str
    namespace: str
    rules: tuple[RouteRule, ...]
    fallback: str | None = None
    canary: Canary | None = None
    document: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def destinations(self) -> list[str]:
        names = [rule.destination for rule in self.rules]
        return names + ([self.fallback] if self.fallback else [])


def parse_duration(text: Any, where: str) -> float:
    """``"30s"``, ``"500ms"``, ``"5m"``, ``"1h"`` (or a number of seconds) as seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool) and text > 0:
        return float(text)
    found = _DURATION.match(text) if isinstance(text, str) else None
    if found is None or float(found.group(1)) <= 0:
        raise _invalid(where, 'must be a duration such as "500ms", "30s" or "5m"')
    return float(found.group(1)) * _UNITS[found.group(2)]


def parse_route(document: Any) -> RouteSpec:
    doc = _object(document, "the body")
    if doc.get("kind", KIND) != KIND:
        raise _invalid("kind", f"must be {KIND!r}")
    if doc.get("apiVersion", API_VERSION) != API_VERSION:
        raise _invalid("apiVersion", f"must be {API_VERSION!r}")
    metadata = _object(doc.get("metadata"), "metadata")
    name = metadata.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise _invalid("metadata.name", "must be 1-128 letters, digits, '.', '_' or '-'")
    namespace = metadata.get("namespace", DEFAULT_NAMESPACE)
    if not isinstance(namespace, str) or not _NAME.match(namespace):
        raise _invalid("metadata.namespace", "must be 1-128 letters, digits, '.', '_' or '-'")
    spec = _object(doc.get("spec"), "spec")
    rules = spec.get("routes")
    if not isinstance(rules, list) or not rules:
        raise _invalid("spec.routes", "must be a non-empty list")
    parsed = tuple(_rule(rule, f"spec.routes[{i}]") for i, rule in enumerate(rules))
    fallback = None
    if spec.get("fallback") is not None:
        fallback = _server_ref(spec["fallback"], "spec.fallback")
    canary = _canary(spec["canary"], parsed) if spec.get("canary") is not None else None
    normalised = {"apiVersion": API_VERSION, "kind": KIND, **doc}
    normalised["metadata"] = {**metadata, "namespace": namespace}
    return RouteSpec(name, namespace, parsed, fallback, canary, normalised)


def _rule(raw: Any, where: str) -> RouteRule:
    rule = _object(raw, where)
    match = _match(rule.get("match", {}), f"{where}.match")
    destination = _server_ref(rule.get("destination"), f"{where}.destination")
    weight = rule.get("weight")
    if weight is not None and not _int_between(weight, 0, 100):
        raise _invalid(f"{where}.weight", "must be an integer from 0 to 100")
    timeout = rule.get("timeout")
    timeout_s = parse_duration(timeout, f"{where}.timeout") if timeout is not None else None
    retries = rule.get("retries", 0)
    if not _int_between(retries, 0, 10):
        raise _invalid(f"{where}.retries", "must be an integer from 0 to 10")
    return RouteRule(match, destination, weight, timeout_s, retries)


def _match(raw: Any, where: str) -> Match:
    match = _object(raw, where)
    headers = _string_map(match.get("headers", {}), f"{where}.headers")
    query = _string_map(match.get("queryParams", {}), f"{where}.queryParams")
    path = match.get("path")
    if path is not None and (not isinstance(path, str) or not path.startswith("/")):
        raise _invalid(f"{where}.path", "must be a path starting with '/'")
    return Match({k.lower(): v for k, v in headers.items()}, query, path)


def _server_ref(raw: Any, where: str) -> str:
    ref = _object(raw, where).get("modelServerRef")
    name = _object(ref, f"{where}.modelServerRef").get("name")
    if not isinstance(name, str) or not name.strip():
        raise _invalid(f"{where}.modelServerRef.name", "must name a deployment or a model")
    return name.strip()


def _canary(raw: Any, rules: tuple[RouteRule, ...]) -> Canary:
    canary = _object(raw, "spec.canary")
    enabled = canary.get("enabled", False)
    if not isinstance(enabled, bool):
        raise _invalid("spec.canary.enabled", "must be true or false")
    split = _object(canary.get("trafficSplit", {"canary": 10}), "spec.canary.trafficSplit")
    given: dict[str, Any] = {"stable": split.get("stable"), "canary": split.get("canary")}
    for key, other in (("stable", "canary"), ("canary", "stable")):
        if given[key] is None and _int_between(given[other], 0, 100):
            given[key] = 100 - given[other]  # one share given: the other is the rest
    for key, value in given.items():
        if not _int_between(value, 0, 100):
            raise _invalid(f"spec.canary.trafficSplit.{key}", "must be an integer from 0 to 100")
    stable, share = int(given["stable"]), int(given["canary"])
    if stable + share != 100:
        raise _invalid("spec.canary.trafficSplit", "stable and canary must add up to 100")
    analysis = _object(canary.get("analysis", {}), "spec.canary.analysis")
    threshold = analysis.get("threshold", 95)
    if not _int_between(threshold, 0, 100):
        raise _invalid("spec.canary.analysis.threshold", "must be a success rate from 0 to 100")
    interval = parse_duration(analysis.get("interval", "1m"), "spec.canary.analysis.interval")
    min_requests = analysis.get("minRequests", 10)
    if not _int_between(min_requests, 1, 1_000_000):
        raise _invalid("spec.canary.analysis.minRequests", "must be a positive integer")
    if enabled and len(rules) < 2:
        raise _invalid("spec.routes", "a canary needs two routes: the stable one, then the canary")
    return Canary(enabled, stable, share, threshold, interval, min_requests)


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(where, "must be an object")
    return value


def _string_map(value: Any, where: str) -> dict[str, str]:
    mapping = _object(value, where)
    for key, item in mapping.items():
        if not isinstance(key, str) or not isinstance(item, str | int | float | bool):
            raise _invalid(f"{where}.{key}", "must be a string value")
    # YAML reads `beta: true` as a boolean; the header or parameter it matches is text.
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in mapping.items()}


def _int_between(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _invalid(where: str, problem: str) -> Unprocessable:
    return Unprocessable(f"{where} {problem}", code="invalid_route", details={"field": where})

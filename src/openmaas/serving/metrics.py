"""Prometheus metrics labelled by model and version: one route, per-model visibility."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass(slots=True)
class EndpointMeters:
    """One deployment's labelled metrics, looked up once instead of on every request.

    ``labels()`` takes a lock and builds a key each time it is called.
    """

    metrics: ServingMetrics
    labels: tuple[str, str]
    latency: Any
    batch_size: Any
    _requests: dict[str, Any] = field(default_factory=dict)

    def requests(self, protocol: str) -> Any:
        counter = self._requests.get(protocol)
        if counter is None:
            counter = self._requests[protocol] = self.metrics.requests.labels(
                *self.labels, protocol
            )
        return counter


class ServingMetrics:
    """One registry per application, so several apps in one process don't collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("model", "version")
        self.requests = Counter(
            "openmaas_inference_requests",
            "Inference requests by model, version and protocol.",
            (*labels, "protocol"),
            registry=self.registry,
        )
        self.errors = Counter(
            "openmaas_inference_errors",
            "Inference requests that failed, by model, version and error code.",
            (*labels, "code"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "openmaas_inference_latency_seconds",
            "Time to answer an inference request.",
            labels,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "openmaas_batch_size",
            "Rows per model invocation after dynamic batching.",
            labels,
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.loads = Counter(
            "openmaas_model_loads", "Models loaded into memory.", labels, registry=self.registry
        )
        self.evictions = Counter(
            "openmaas_model_evictions",
            "Models evicted from memory to stay within the budget.",
            labels,
            registry=self.registry,
        )
        self.loaded = Gauge(
            "openmaas_loaded_models",
            "Models in memory now.",
            registry=self.registry,
            multiprocess_mode="livesum",  # with several workers: the sum over live ones
        )
        self.loaded_bytes = Gauge(
            "openmaas_loaded_model_bytes",
            "Estimated memory of the models in memory.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self._gateway()

    def _gateway(self) -> None:
        """Requests and tokens per model and plan, as the gateway answered them."""
        self.gateway_requests = Counter(
            "openmaas_gateway_requests",
            "Inference requests by model (or route), plan, protocol and HTTP status.",
            ("model", "plan", "protocol", "status"),
            registry=self.registry,
        )
        self.gateway_tokens = Counter(
            "openmaas_gateway_tokens",
            "Tokens metered, by model (or route), plan and direction (input or output).",
            ("model", "plan", "direction"),
            registry=self.registry,
        )
        self._children: dict[tuple[str, ...], Any] = {}

    def count_request(
        self,
        model: str,
        plan: str,
        protocol: str,
        status: int,
        input_tokens: int,
        output_tokens: int,
    ) -> None:
        """One answered request; labelled children are looked up once, then cached."""
        key = (model, plan, protocol, str(status))
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.gateway_requests.labels(*key)
        child.inc()
        for direction, tokens in (("input", input_tokens), ("output", output_tokens)):
            if tokens:
                token_key = (model, plan, direction)
                counter = self._children.get(token_key)
                if counter is None:
                    counter = self._children[token_key] = self.gateway_tokens.labels(*token_key)
                counter.inc(tokens)

    def meters(self, labels: tuple[str, str]) -> EndpointMeters:
        return EndpointMeters(
            self, labels, self.latency.labels(*labels), self.batch_size.labels(*labels)
        )

"""Prometheus metrics labelled by model and version: one route, per-model visibility."""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import mark_process_dead

from openmaas.background import Periodic

logger = logging.getLogger("openmaas.serving")

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
        self.usage_dropped = Counter(
            "openmaas_usage_dropped_requests",
            "Requests whose usage was lost: the database was down and the spill files full.",
            registry=self.registry,
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

    def forget_version(self, labels: tuple[str, str]) -> None:
        """Remove the series of a model version no longer deployed: a platform that
        deploys and undeploys all day must not export every version it ever served."""
        model, version = labels
        for metric, names in (
            (self.requests, ("model", "version", "protocol")),
            (self.errors, ("model", "version", "code")),
            (self.latency, ("model", "version")),
            (self.batch_size, ("model", "version")),
            (self.loads, ("model", "version")),
            (self.evictions, ("model", "version")),
        ):
            remove_series(metric, names, model=model, version=version)

    def forget_model(self, name: str) -> None:
        """Remove the gateway's series of a model (or route) name nothing answers to now."""
        remove_series(self.gateway_requests, ("model", "plan", "protocol", "status"), model=name)
        remove_series(self.gateway_tokens, ("model", "plan", "direction"), model=name)
        for key in [key for key in self._children if key[0] == name]:
            del self._children[key]

    def meters(self, labels: tuple[str, str]) -> EndpointMeters:
        return EndpointMeters(
            self, labels, self.latency.labels(*labels), self.batch_size.labels(*labels)
        )


def remove_series(metric: Any, names: tuple[str, ...], **match: str) -> None:
    """Remove every labelled child of ``metric`` whose labels include ``match``.

    With several workers (prometheus_client's multiprocess mode) the values live in the
    workers' files as well, and stay there until ``openmaas serve`` starts again.
    """
    found: set[tuple[str, ...]] = set()
    for family in metric.collect():
        for sample in family.samples:
            labels = sample.labels
            if all(labels.get(key) == value for key, value in match.items()):
                found.add(tuple(labels[name] for name in names))
    for values in found:
        with contextlib.suppress(KeyError):
            metric.remove(*values)


class WorkerMetricFiles:
    """With several workers, the live gauges' files of workers that have died are removed.

    prometheus_client keeps each worker's values in files named by its process id; a
    gauge in ``livesum`` mode (models loaded, their bytes) sums every file present, so a
    worker killed (and replaced by a new one) would be counted on. Each worker looks for
    such files now and then and marks their processes dead (``mark_process_dead``), and
    marks itself on a clean stop. Counters' files stay: a counter must not go down.
    """

    def __init__(self, directory: Path, *, interval: float = 10.0) -> None:
        self.directory = directory
        self._sweeper = Periodic(
            "openmaas-metric-files",
            interval,
            self.sweep,
            logger=logger,
            failure="could not remove the metric files of dead workers",
        )

    async def sweep(self) -> list[int]:
        """The ids of dead workers whose files were removed."""
        dead = []
        for path in self.directory.glob("gauge_live*_*.db"):
            pid = int(path.stem.rsplit("_", 1)[1])
            if pid not in dead and not _alive(pid):
                mark_process_dead(pid, str(self.directory))
                dead.append(pid)
        return dead

    async def start(self) -> None:
        await self.sweep()
        self._sweeper.start()

    async def stop(self) -> None:
        await self._sweeper.stop()
        mark_process_dead(os.getpid(), str(self.directory))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

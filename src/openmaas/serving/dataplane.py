"""The one inference path every protocol shares: admit, batch, run, measure.

Protocol adapters (``/predict``, ``/v2``) turn their wire format into named NumPy
tensors, call ``DataPlane.infer`` and turn the result back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from openmaas import tracing
from openmaas.domain.deployments import DeploymentStatus
from openmaas.domain.errors import (
    GatewayTimeout,
    NotFound,
    OpenMaaSError,
    ServiceUnavailable,
    Unprocessable,
)
from openmaas.incidents import reported
from openmaas.runtimes import Runtime, TensorRuntime, Tensors
from openmaas.serving.batcher import RunBatch
from openmaas.serving.cache import CachedModel, ModelCache
from openmaas.serving.endpoints import Endpoint, EndpointTable
from openmaas.serving.metrics import EndpointMeters, ServingMetrics

RuntimeT = TypeVar("RuntimeT", bound=Runtime)


def _recovered(endpoint: Endpoint) -> None:
    """A model whose load failed (say, its bucket was away) has loaded on a request."""
    endpoint.deployment.status = DeploymentStatus.ACTIVE
    endpoint.deployment.error = None


class DataPlane:
    def __init__(self, table: EndpointTable, cache: ModelCache, metrics: ServingMetrics) -> None:
        self.table = table
        self.cache = cache
        self.metrics = metrics

    def meters(self, endpoint: Endpoint) -> EndpointMeters:
        meters = endpoint.meters
        if meters is None:
            meters = endpoint.meters = self.metrics.meters(endpoint.labels)
        return meters

    def runner(self, endpoint: Endpoint) -> RunBatch:
        """Run one (possibly batched) call on the endpoint's model, loading it if needed."""

        async def run(inputs: Tensors, outputs: Sequence[str] | None) -> Tensors:
            return await self._run(endpoint, inputs, outputs)

        return run

    async def _run(
        self, endpoint: Endpoint, inputs: Tensors, outputs: Sequence[str] | None
    ) -> Tensors:
        try:
            entry = await self._acquire(endpoint)
            runtime = entry.runtime
            try:
                if not isinstance(runtime, TensorRuntime):
                    raise Unprocessable(
                        f"{endpoint.name!r} serves a {endpoint.deployment.runtime} model, "
                        "which takes no tensors; use its own API",
                        code="wrong_protocol",
                    )
                rows = len(next(iter(inputs.values())))
                self.meters(endpoint).batch_size.observe(rows)
                return await runtime.infer(inputs, outputs)
            finally:
                await self.cache.release(entry)
        except OpenMaaSError:
            raise
        except Exception as exc:
            raise reported(
                Unprocessable,
                "the model failed on this input",
                code="model_error",
                detail=f"{endpoint.name}: {exc!r}",
            ) from exc

    async def _acquire(self, endpoint: Endpoint) -> CachedModel:
        """The endpoint's model, loaded now if it is not; a failed load marks the endpoint
        failed (``/v2/models/{name}/ready`` says so) until a later one succeeds."""
        try:
            entry = await self.cache.acquire(
                endpoint.cache_key, endpoint.build_runtime, endpoint.size, endpoint.labels
            )
        except Exception as exc:
            # A failure of ours already told without details (an upstream that is down)
            # passes as it is; anything else is told without paths or library text.
            ours = isinstance(exc, OpenMaaSError) and exc.status_code >= 500
            error = exc if ours else _load_failed(endpoint, exc)
            assert isinstance(error, OpenMaaSError)
            endpoint.deployment.status = DeploymentStatus.FAILED
            endpoint.deployment.error = error.message
            if error is exc:
                raise
            raise error from exc
        if endpoint.deployment.status is DeploymentStatus.FAILED:
            _recovered(endpoint)
        return entry

    async def infer(
        self,
        endpoint: Endpoint,
        inputs: Tensors,
        outputs: Sequence[str] | None = None,
        *,
        protocol: str,
    ) -> Tensors:
        if tracing.active is not None:
            with tracing.span("openmaas.model", _model_attributes(endpoint)):
                return await self._infer(endpoint, inputs, outputs, protocol)
        return await self._infer(endpoint, inputs, outputs, protocol)

    async def _infer(
        self,
        endpoint: Endpoint,
        inputs: Tensors,
        outputs: Sequence[str] | None,
        protocol: str,
    ) -> Tensors:
        if endpoint.closed:
            raise NotFound(f"no endpoint {endpoint.name!r} is deployed", code="endpoint_not_found")
        started = time.perf_counter()
        # Stays set when the request is cancelled (the client left) before it finished.
        failure: str | None = "cancelled"
        endpoint.enter()
        try:
            async with asyncio.timeout(endpoint.deployment.config.timeout_s):
                async with endpoint.semaphore:
                    if endpoint.batcher is not None:
                        result = await endpoint.batcher.submit(inputs, outputs)
                    else:
                        result = await self._run(endpoint, inputs, outputs)
            failure = None
            return result
        except TimeoutError as exc:
            failure = "inference_timeout"
            raise GatewayTimeout(
                f"{endpoint.name!r} did not answer within {endpoint.deployment.config.timeout_s} s",
                code=failure,
            ) from exc
        except OpenMaaSError as exc:
            failure = exc.code
            raise
        finally:
            self._observe(endpoint, started, protocol, failure)

    @asynccontextmanager
    async def session(
        self, endpoint: Endpoint, kind: type[RuntimeT], *, protocol: str
    ) -> AsyncIterator[RuntimeT]:
        """The endpoint's loaded runtime, pinned for as long as the block (or stream) runs.

        For runtimes that speak their own API (language models): concurrency limit,
        loading, statistics and metrics as ``infer`` has them; timeouts are the caller's,
        since a stream may rightly last longer than any single request.
        """
        if endpoint.closed:
            raise NotFound(f"no endpoint {endpoint.name!r} is deployed", code="endpoint_not_found")
        started = time.perf_counter()
        failure: str | None = "cancelled"
        # Not made current: a stream's model span lasts past the request handler.
        span = tracing.start("openmaas.model", _model_attributes(endpoint))
        endpoint.enter()
        try:
            async with endpoint.semaphore:
                entry = await self._acquire(endpoint)
                try:
                    if not isinstance(entry.runtime, kind):
                        raise Unprocessable(
                            f"{endpoint.name!r} serves a {endpoint.deployment.runtime} model, "
                            "which does not answer this API",
                            code="wrong_model_type",
                        )
                    yield entry.runtime
                finally:
                    await self.cache.release(entry)
            failure = None
        except OpenMaaSError as exc:
            failure = exc.code
            raise
        finally:
            self._observe(endpoint, started, protocol, failure)
            if span is not None:
                if failure is not None:
                    span.set_attribute("error.type", failure)
                span.end()

    def _observe(
        self, endpoint: Endpoint, started: float, protocol: str, failure: str | None
    ) -> None:
        """Count a finished request in the endpoint's statistics and the metrics."""
        endpoint.leave()
        elapsed = time.perf_counter() - started
        endpoint.stats.observe(elapsed * 1000, error=failure is not None)
        meters = self.meters(endpoint)
        meters.requests(protocol).inc()
        meters.latency.observe(elapsed)
        if failure is not None:
            self.metrics.errors.labels(*endpoint.labels, failure).inc()


def _load_failed(endpoint: Endpoint, exc: BaseException) -> ServiceUnavailable:
    """A model that would not load: the caller is not told why (paths, library text)."""
    detail = exc.message if isinstance(exc, OpenMaaSError) else repr(exc)
    return reported(
        ServiceUnavailable,
        f"the model of {endpoint.name!r} could not be loaded",
        code="model_load_failed",
        detail=detail,
    )


def _model_attributes(endpoint: Endpoint) -> dict[str, Any]:
    deployment = endpoint.deployment
    return {
        "openmaas.endpoint": deployment.endpoint_name,
        "gen_ai.response.model": deployment.model_name,
        "openmaas.model.version": deployment.version,
        "openmaas.runtime": deployment.runtime,
    }

"""The one inference path every protocol shares: admit, batch, run, measure.

Protocol adapters (``/predict``, ``/v2``) turn their wire format into named NumPy
tensors, call ``DataPlane.infer`` and turn the result back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from openmaas.domain.errors import (
    GatewayTimeout,
    NotFound,
    OpenMaaSError,
    ServiceUnavailable,
    Unprocessable,
)
from openmaas.runtimes import Runtime, TensorRuntime, Tensors
from openmaas.serving.batcher import RunBatch
from openmaas.serving.cache import ModelCache
from openmaas.serving.endpoints import Endpoint, EndpointTable
from openmaas.serving.metrics import ServingMetrics


class DataPlane:
    def __init__(self, table: EndpointTable, cache: ModelCache, metrics: ServingMetrics) -> None:
        self.table = table
        self.cache = cache
        self.metrics = metrics

    def runner(self, endpoint: Endpoint) -> RunBatch:
        """Run one (possibly batched) call on the endpoint's model, loading it if needed."""

        async def run(inputs: Tensors, outputs: Sequence[str] | None) -> Tensors:
            try:
                async with self.cache.use(
                    endpoint.cache_key, endpoint.build_runtime, endpoint.size, endpoint.labels
                ) as runtime:
                    if not isinstance(runtime, TensorRuntime):
                        raise Unprocessable(
                            f"{endpoint.name!r} serves a {endpoint.deployment.runtime} model, "
                            "which takes no tensors; use its own API",
                            code="wrong_protocol",
                        )
                    rows = len(next(iter(inputs.values())))
                    self.metrics.batch_size.labels(*endpoint.labels).observe(rows)
                    return await runtime.infer(inputs, outputs)
            except OpenMaaSError:
                raise
            except Exception as exc:
                if endpoint.cache_key not in self.cache:
                    raise ServiceUnavailable(
                        f"the model of {endpoint.name!r} could not be loaded: {exc!r}",
                        code="model_load_failed",
                    ) from exc
                raise Unprocessable(
                    f"the model failed on this input: {exc}", code="model_error"
                ) from exc

        return run

    async def infer(
        self,
        endpoint: Endpoint,
        inputs: Tensors,
        outputs: Sequence[str] | None = None,
        *,
        protocol: str,
    ) -> Tensors:
        if endpoint.closed:
            raise NotFound(f"no endpoint {endpoint.name!r} is deployed", code="endpoint_not_found")
        started = time.perf_counter()
        failed = True
        code = "ok"
        endpoint.enter()
        try:
            async with asyncio.timeout(endpoint.deployment.config.timeout_s):
                async with endpoint.semaphore:
                    if endpoint.batcher is not None:
                        result = await endpoint.batcher.submit(inputs, outputs)
                    else:
                        result = await self.runner(endpoint)(inputs, outputs)
            failed = False
            return result
        except TimeoutError as exc:
            code = "inference_timeout"
            raise GatewayTimeout(
                f"{endpoint.name!r} did not answer within {endpoint.deployment.config.timeout_s} s",
                code=code,
            ) from exc
        except OpenMaaSError as exc:
            code = exc.code
            raise
        finally:
            endpoint.leave()
            elapsed = time.perf_counter() - started
            endpoint.stats.observe(elapsed * 1000, error=failed)
            labels = endpoint.labels
            self.metrics.requests.labels(*labels, protocol).inc()
            self.metrics.latency.labels(*labels).observe(elapsed)
            if failed:
                self.metrics.errors.labels(*labels, code).inc()

    @asynccontextmanager
    async def session(
        self, endpoint: Endpoint, kind: type[Runtime], *, protocol: str
    ) -> AsyncIterator[Runtime]:
        """The endpoint's loaded runtime, pinned for as long as the block (or stream) runs.

        For runtimes that speak their own API (language models): concurrency limit,
        loading, statistics and metrics as ``infer`` has them; timeouts are the caller's,
        since a stream may rightly last longer than any single request.
        """
        if endpoint.closed:
            raise NotFound(f"no endpoint {endpoint.name!r} is deployed", code="endpoint_not_found")
        started = time.perf_counter()
        failed = True
        code = "ok"
        endpoint.enter()
        try:
            async with endpoint.semaphore:
                try:
                    cached = self.cache.use(
                        endpoint.cache_key, endpoint.build_runtime, endpoint.size, endpoint.labels
                    )
                    runtime = await cached.__aenter__()
                except OpenMaaSError:
                    raise
                except Exception as exc:
                    raise ServiceUnavailable(
                        f"the model of {endpoint.name!r} could not be loaded: {exc!r}",
                        code="model_load_failed",
                    ) from exc
                try:
                    if not isinstance(runtime, kind):
                        raise Unprocessable(
                            f"{endpoint.name!r} serves a {endpoint.deployment.runtime} model, "
                            "which does not answer this API",
                            code="wrong_model_type",
                        )
                    yield runtime
                finally:
                    await cached.__aexit__(None, None, None)
            failed = False
        except OpenMaaSError as exc:
            code = exc.code
            raise
        finally:
            endpoint.leave()
            elapsed = time.perf_counter() - started
            endpoint.stats.observe(elapsed * 1000, error=failed)
            self.metrics.requests.labels(*endpoint.labels, protocol).inc()
            self.metrics.latency.labels(*endpoint.labels).observe(elapsed)
            if failed:
                self.metrics.errors.labels(*endpoint.labels, code).inc()

"""The model cache under eviction pressure: no caller ever gets an unloaded model."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from openmaas.domain.models import Signature
from openmaas.runtimes import ArtifactSpec, TensorRuntime, Tensors
from openmaas.serving.cache import ModelCache
from openmaas.serving.metrics import ServingMetrics


class SlowLoadingModel(TensorRuntime):
    """Takes a while to load; answers only while loaded, as a real runtime does."""

    name = "slow-loading"

    def __init__(self, spec: ArtifactSpec) -> None:
        super().__init__(spec)
        self.loaded = False

    @classmethod
    def inspect(cls, spec: ArtifactSpec) -> Signature:
        return spec.signature

    async def load(self) -> None:
        await asyncio.sleep(0.01)
        self.loaded = True

    async def unload(self) -> None:
        self.loaded = False

    @property
    def ready(self) -> bool:
        return self.loaded

    async def infer(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        assert self.loaded, "inference on an unloaded model"
        return {"output": np.zeros(1)}


async def build() -> SlowLoadingModel:
    # Builds are coroutines: a remote artifact is fetched before the runtime is made.
    return SlowLoadingModel(ArtifactSpec(path=Path("unused")))


def test_a_caller_that_waited_on_a_load_never_gets_the_evicted_copy() -> None:
    asyncio.run(_waiters_and_eviction())


async def _waiters_and_eviction() -> None:
    cache = ModelCache(budget_bytes=1, metrics=ServingMetrics())
    labels = ("m", "1")

    async def use(key: int) -> bool:
        entry = await cache.acquire((key, ""), build, 1, labels)
        try:
            return entry.runtime.ready
        finally:
            await cache.release(entry)

    # Room for one model: while the waiters on model 1's load are scheduled, the loader
    # has finished and released it, and a load of model 2 evicted it.
    results = await asyncio.gather(use(1), use(1), use(1), use(2), use(1), use(2))
    assert all(results)


def test_many_models_through_a_small_cache_all_answer() -> None:
    asyncio.run(_many_models())


async def _many_models() -> None:
    cache = ModelCache(budget_bytes=3, metrics=ServingMetrics())

    async def call(key: int) -> None:
        entry = await cache.acquire((key % 10, ""), build, 1, ("m", str(key % 10)))
        try:
            await entry.runtime.infer({"input": np.zeros((1, 3))})  # type: ignore[attr-defined]
        finally:
            await cache.release(entry)

    await asyncio.gather(*(call(i) for i in range(400)))
    assert cache.used_bytes <= 3

"""Loaded models, bounded by a memory budget: least recently used evicted, loaded on demand.

ModelMesh's idea without Kubernetes: far more versions can be deployed than fit in
memory. Concurrent first requests for one model share a single load.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from openmaas.runtimes import Runtime
from openmaas.serving.metrics import ServingMetrics

logger = logging.getLogger("openmaas.serving")

CacheKey = tuple[int, str]
"""(model version id, options fingerprint): endpoints of one version share one copy."""

Build = Callable[[], Awaitable[Runtime]]
"""Makes the runtime of a model (fetching its artifact first when it is remote)."""


@dataclass(slots=True)
class CachedModel:
    """A loaded runtime and how many calls are using it (it is not evicted while > 0)."""

    runtime: Runtime
    size: int
    labels: tuple[str, str]
    in_use: int = 0


class ModelCache:
    def __init__(self, budget_bytes: int, metrics: ServingMetrics) -> None:
        self.budget_bytes = budget_bytes
        self.metrics = metrics
        self._entries: OrderedDict[CacheKey, CachedModel] = OrderedDict()
        self._loading: dict[CacheKey, asyncio.Future[CachedModel]] = {}
        self._used_bytes = 0

    @property
    def used_bytes(self) -> int:
        return self._used_bytes

    def __contains__(self, key: CacheKey) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def is_loading(self, key: CacheKey) -> bool:
        return key in self._loading

    def loaded(self, key: CacheKey) -> Runtime | None:
        """The runtime loaded for ``key`` in this process, if it is."""
        entry = self._entries.get(key)
        return entry.runtime if entry is not None else None

    @asynccontextmanager
    async def use(
        self,
        key: CacheKey,
        build: Build,
        size: int,
        labels: tuple[str, str],
    ) -> AsyncIterator[Runtime]:
        """The loaded runtime for ``key``, pinned (not evictable) while in use."""
        entry = await self.acquire(key, build, size, labels)
        try:
            yield entry.runtime
        finally:
            await self.release(entry)

    async def acquire(
        self,
        key: CacheKey,
        build: Build,
        size: int,
        labels: tuple[str, str],
    ) -> CachedModel:
        """``use`` without a context manager, for the hot path: pair it with ``release``."""
        while True:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                entry.in_use += 1
                return entry
            entry = await self._load(key, build, size, labels)
            # A caller that waited on another's load resumes later than the loader: by
            # then the model may have been used, released and evicted (and unloaded).
            if self._entries.get(key) is entry:
                entry.in_use += 1
                return entry

    async def release(self, entry: CachedModel) -> None:
        entry.in_use -= 1
        if self._used_bytes > self.budget_bytes and not entry.in_use:
            # Loads that found every model busy went over budget; give it back now.
            await self._make_room(0)

    async def ensure_loaded(
        self, key: CacheKey, build: Build, size: int, labels: tuple[str, str]
    ) -> None:
        async with self.use(key, build, size, labels):
            pass

    async def _load(
        self, key: CacheKey, build: Build, size: int, labels: tuple[str, str]
    ) -> CachedModel:
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[CachedModel] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            await self._make_room(size)
            # Counted from now, so that concurrent loads see each other's room.
            self._used_bytes += size
            try:
                runtime = await build()
                await runtime.load()
            except BaseException:
                self._used_bytes -= size
                raise
            entry = CachedModel(runtime=runtime, size=size, labels=labels)
            self._entries[key] = entry
            self.metrics.loads.labels(*labels).inc()
            self._publish_gauges()
            future.set_result(entry)
            return entry
        except BaseException as exc:
            future.set_exception(exc)
            # Nobody else may be waiting; retrieve it so asyncio doesn't warn.
            future.exception()
            raise
        finally:
            del self._loading[key]

    async def _make_room(self, needed: int) -> None:
        for key in list(self._entries):
            if self._used_bytes + needed <= self.budget_bytes:
                return
            entry = self._entries[key]
            if entry.in_use:
                continue
            await self._drop(key)
            self.metrics.evictions.labels(*entry.labels).inc()
        if self._used_bytes + needed > self.budget_bytes:
            logger.warning("model cache over budget: every loaded model is busy")

    async def drop(self, key: CacheKey) -> None:
        """Unload ``key`` now (its last endpoint was undeployed)."""
        if key in self._entries:
            await self._drop(key)

    async def _drop(self, key: CacheKey) -> None:
        entry = self._entries.pop(key)
        self._used_bytes -= entry.size
        self._publish_gauges()
        try:
            await entry.runtime.unload()
        except Exception:
            logger.exception("unloading %s failed", key)

    async def clear(self) -> None:
        for key in list(self._entries):
            await self._drop(key)

    def _publish_gauges(self) -> None:
        self.metrics.loaded.set(len(self._entries))
        self.metrics.loaded_bytes.set(self._used_bytes)

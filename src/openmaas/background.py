"""A job that runs every few seconds in the background: refreshes, flushes, syncs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable


class Periodic:
    """Runs ``job`` every ``interval`` seconds until stopped.

    A run that fails is logged and the next tick tries again: these jobs keep a cache or
    a buffer in step with the database, and one database hiccup must not end them.
    """

    def __init__(
        self,
        name: str,
        interval: float,
        job: Callable[[], Awaitable[object]],
        *,
        logger: logging.Logger,
        failure: str,
    ) -> None:
        self.name = name
        self.interval = interval
        self.job = job
        self.logger = logger
        self.failure = failure
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.job()
            except asyncio.CancelledError:
                raise
            except Exception:
                self.logger.warning(self.failure, exc_info=True)

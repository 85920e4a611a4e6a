"""A job that runs every few seconds in the background: refreshes, flushes, syncs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from openmaas.domain.errors import OpenMaaSError


class Periodic:
    """Runs ``job`` every ``interval`` seconds until stopped.

    A run that fails is logged and the next tick tries again: these jobs keep a cache or
    a buffer in step with the database, and one database hiccup must not end them. An
    outage is logged when it starts and when it ends, not on every tick in between.
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
        self._failing = False

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
            except Exception as error:
                if not self._failing:
                    self._failing = True
                    # An unreachable database is expected to happen: one line, no traceback.
                    expected = isinstance(error, OpenMaaSError)
                    self.logger.warning(
                        "%s: %s", self.failure, error, exc_info=None if expected else True
                    )
                continue
            if self._failing:
                self._failing = False
                self.logger.warning("%s: working again", self.name)

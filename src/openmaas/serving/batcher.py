"""Dynamic batching: concurrent requests to one deployment run as one model call.

Like Triton's dynamic batcher and Ray Serve's ``@serve.batch``: requests wait at most
``max_wait_ms`` for company, and a batch runs as soon as it holds ``max_batch_size`` rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np

from openmaas.runtimes import Tensors

RunBatch = Callable[[Tensors, Sequence[str] | None], Awaitable[Tensors]]


@dataclass(slots=True)
class _Pending:
    inputs: Tensors
    rows: int
    outputs: Sequence[str] | None
    future: asyncio.Future[Tensors]


class Batcher:
    def __init__(self, run: RunBatch, *, max_batch_size: int, max_wait_ms: float) -> None:
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self._queue: list[_Pending] = []
        self._queued_rows = 0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, inputs: Tensors, outputs: Sequence[str] | None) -> Tensors:
        rows = len(next(iter(inputs.values())))
        if rows >= self.max_batch_size:
            return await self._run(inputs, outputs)
        loop = asyncio.get_running_loop()
        pending = _Pending(inputs, rows, outputs, loop.create_future())
        self._queue.append(pending)
        self._queued_rows += rows
        if self._queued_rows >= self.max_batch_size:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.max_wait, self._flush)
        return await pending.future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._queue, self._queued_rows = self._queue, [], 0
        if batch:
            task = asyncio.get_running_loop().create_task(self._execute(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _execute(self, batch: list[_Pending]) -> None:
        try:
            groups = _compatible_groups(batch)
        except Exception as exc:  # pragma: no cover - grouping only compares shapes
            for item in batch:
                _fail(item, exc)
            return
        await asyncio.gather(*(self._run_group(group) for group in groups))

    async def _run_group(self, group: list[_Pending]) -> None:
        if len(group) == 1:
            item = group[0]
            try:
                item.future.set_result(await self._run(item.inputs, item.outputs))
            except Exception as exc:
                _fail(item, exc)
            return
        names = list(group[0].inputs)
        stacked = {name: np.concatenate([item.inputs[name] for item in group]) for name in names}
        wanted = _union_outputs(group)
        try:
            result = await self._run(stacked, wanted)
        except Exception as exc:
            for item in group:
                _fail(item, exc)
            return
        start = 0
        for item in group:
            end = start + item.rows
            chosen = item.outputs or list(result)
            if not item.future.done():
                item.future.set_result({name: result[name][start:end] for name in chosen})
            start = end


def _fail(item: _Pending, exc: BaseException) -> None:
    if not item.future.done():
        item.future.set_exception(exc)


def _signature_of(item: _Pending) -> tuple[object, ...]:
    return tuple((name, value.dtype, value.shape[1:]) for name, value in item.inputs.items())


def _compatible_groups(batch: list[_Pending]) -> list[list[_Pending]]:
    """Rows can only be stacked with rows of the same names, dtypes and trailing shapes."""
    groups: dict[tuple[object, ...], list[_Pending]] = {}
    for item in batch:
        groups.setdefault(_signature_of(item), []).append(item)
    return list(groups.values())


def _union_outputs(group: list[_Pending]) -> list[str] | None:
    if any(item.outputs is None for item in group):
        return None
    names: list[str] = []
    for item in group:
        names.extend(name for name in item.outputs or () if name not in names)
    return names

"""Token-by-token generation with a Hugging Face model, off the event loop.

``model.generate`` is blocking, so each request runs it in its own thread and a streamer
hands every step's token ids to the event loop through an ``asyncio.Queue``. We do not use
``TextIteratorStreamer``: it takes one sequence only (no ``n``), holds text back until a
word ends, and its iterator blocks, which an event loop must not do.

Generations of one process run one at a time: on CPU they would only fight for the same
cores, and a request with a ``seed`` must own torch's global random generator.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from openmaas.domain.errors import BadRequest

_GENERATION_LOCK = threading.Lock()
_END = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def _streamer(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any]) -> Any:
    from transformers.generation.streamers import BaseStreamer

    class QueueStreamer(BaseStreamer):  # type: ignore[misc]
        def __init__(self) -> None:
            self.prompt_seen = False

        def put(self, value: Any) -> None:
            if not self.prompt_seen:  # generate() first echoes the prompt
                self.prompt_seen = True
                return
            loop.call_soon_threadsafe(queue.put_nowait, value.reshape(-1).tolist())

        def end(self) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, _END)

    return QueueStreamer()


def _stopper(event: threading.Event) -> Any:
    import torch
    from transformers import StoppingCriteria

    class StopWhenAsked(StoppingCriteria):  # type: ignore[misc]
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), event.is_set(), dtype=torch.bool)

    return StopWhenAsked()


class Generations:
    """The generations one model runs, so unloading it can stop and wait for them.

    A thread killed at interpreter exit in the middle of a torch operation aborts the
    process, hence the join.
    """

    def __init__(self) -> None:
        self._running: dict[threading.Thread, threading.Event] = {}

    def stop_all(self, timeout: float = 30.0) -> None:
        """Ask every generation to stop and wait for it (blocking)."""
        running = list(self._running.items())
        for _thread, stop in running:
            stop.set()
        for thread, _stop in running:
            thread.join(timeout)

    def steps(
        self, model: Any, inputs: dict[str, Any], config: Any, seed: int | None
    ) -> AsyncGenerator[list[int], None]:
        return _generate_steps(self._running, model, inputs, config, seed)


async def _generate_steps(
    running: dict[threading.Thread, threading.Event],
    model: Any,
    inputs: dict[str, Any],
    config: Any,
    seed: int | None,
) -> AsyncGenerator[list[int], None]:
    """Yield, per generation step, one new token id for each returned sequence.

    Leaving the loop early (a finished request, a client gone) stops the generation at
    its next step, so the lock is not held for tokens nobody reads.
    """
    import torch
    from transformers import StoppingCriteriaList

    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    stop = threading.Event()

    def post(item: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the loop is gone: nobody is listening any more
            stop.set()

    def run() -> None:
        try:
            with _GENERATION_LOCK:
                if stop.is_set():
                    return
                if seed is not None:
                    torch.manual_seed(seed)
                with torch.inference_mode():
                    model.generate(
                        **inputs,
                        generation_config=config,
                        streamer=_streamer(loop, queue),
                        stopping_criteria=StoppingCriteriaList([_stopper(stop)]),
                    )
        except BaseException as exc:
            post(_Failure(exc))
        finally:
            running.pop(threading.current_thread(), None)
            post(_END)

    thread = threading.Thread(target=run, name="openmaas-generate", daemon=True)
    running[thread] = stop
    thread.start()
    try:
        while True:
            item = await queue.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise BadRequest(
                    f"the model failed to generate: {item.error!r}", code="model_error"
                ) from item.error
            yield item
    finally:
        stop.set()


class Detokenizer:
    """Turns token ids into text one token at a time without splitting a character.

    Decoding a growing window and emitting the new suffix keeps the spaces and merges a
    tokenizer adds between tokens, and waits while a UTF-8 character is incomplete.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = 0
        self.read = 0

    def _decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def add(self, token: int) -> str:
        self.ids.append(token)
        before = self._decode(self.ids[self.prefix : self.read])
        after = self._decode(self.ids[self.prefix :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.prefix, self.read = self.read, len(self.ids)
            return after[len(before) :]
        return ""


class Choice:
    """One generated sequence: its text so far, its token count and why it ended."""

    def __init__(self, tokenizer: Any, *, eos: set[int], stops: list[str], max_tokens: int) -> None:
        self.detokenizer = Detokenizer(tokenizer)
        self.eos = eos
        self.stops = stops
        # Text that may be the start of a stop sequence is held back until it is not.
        self.holdback = max((len(s) for s in stops), default=1) - 1
        self.max_tokens = max_tokens
        self.text = ""
        self.sent = 0
        self.tokens = 0
        self.finish_reason: str | None = None

    def add(self, token: int) -> str:
        """Take one token; return the text the client may now see."""
        if self.finish_reason is not None:
            return ""
        self.tokens += 1
        if token in self.eos:
            self.finish_reason = "stop"
            return self._release(len(self.text))
        self.text += self.detokenizer.add(token)
        for stop in self.stops:
            at = self.text.find(stop, max(0, self.sent - len(stop)))
            if at != -1:
                self.text = self.text[:at]
                self.finish_reason = "stop"
                return self._release(at)
        if self.tokens >= self.max_tokens:
            self.finish_reason = "length"
            return self._release(len(self.text))
        return self._release(max(self.sent, len(self.text) - self.holdback))

    def close(self) -> str:
        """The generation ended without this choice finishing: the length ran out."""
        if self.finish_reason is not None:
            return ""
        self.finish_reason = "length"
        return self._release(len(self.text))

    def _release(self, upto: int) -> str:
        released = self.text[self.sent : upto]
        self.sent = max(self.sent, upto)
        return released

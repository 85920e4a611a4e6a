"""Server-sent events for streamed completions, metered even when the client leaves early."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator
from contextlib import AsyncExitStack
from typing import Any

import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from openmaas.api.admission import Call
from openmaas.api.errors import error_body
from openmaas.domain.errors import OpenMaaSError
from openmaas.runtimes.language import LanguageRuntime

DONE = b"data: [DONE]\n\n"


def event(data: Any) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def _piece(choice: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The part of a streamed choice that holds its text, and the text."""
    delta = choice.get("delta")
    holder = delta if isinstance(delta, dict) else choice
    key = "content" if holder is delta else "text"
    text = holder.get(key)
    return (holder, text) if isinstance(text, str) else (None, "")


class MeteredStream:
    """Relays a runtime's chunks as SSE, never past the output allowance, and meters it.

    With a ``cap`` (output tokens per choice, from the reservation), a choice that reaches
    it is ended with ``finish_reason: "length"``, whatever the model does; once every
    choice has ended the upstream is closed and the stream finishes cleanly (a usage chunk
    when asked, then ``[DONE]``). The runtime's final usage chunk is exact when nothing
    was cut; a stream that was cut, or cut short (the client left, the upstream died), is
    metered from the text actually sent, counted with the model's tokenizer.
    """

    def __init__(
        self,
        *,
        call: Call,
        runtime: LanguageRuntime,
        body: dict[str, Any],
        chunks: AsyncIterator[dict[str, Any]],
        first: dict[str, Any],
        include_usage: bool,
        cap: int | None,
        choices: int,
        resources: AsyncExitStack,
        done: Callable[[int], Awaitable[None]],
    ) -> None:
        self.call = call
        self.runtime = runtime
        self.body = body
        self.chunks = chunks
        self.first = first
        self.include_usage = include_usage
        self.cap = cap
        self.choices = choices
        self.resources = resources
        self.done = done
        self.texts: dict[int, str] = {}  # what each choice was sent
        self.counts: dict[int, int] = {}  # its tokens, counted piece by piece (errs high)
        self.ended: set[int] = set()
        self.cut = False
        self.usage: dict[str, Any] | None = None
        self.last: dict[str, Any] = first

    def _relay(self, chunk: dict[str, Any]) -> bytes | None:
        if chunk.get("usage") and not chunk.get("choices"):
            self.usage = chunk["usage"]
            if self.cut or not self.include_usage:
                return None
            usage = self._settled_usage()
            return event({**chunk, "usage": usage})
        self.last = chunk
        if self.cap is not None:
            self._cap(chunk)
            if not chunk["choices"]:
                return None
        for choice in chunk.get("choices") or ():
            _holder, text = _piece(choice)
            index = int(choice.get("index", 0))
            if self.cap is None:
                self.texts[index] = self.texts.get(index, "") + text
            if choice.get("finish_reason"):
                self.ended.add(index)
        if self.include_usage:
            # OpenAI's chunks before the last say ``"usage": null`` when usage was asked for.
            chunk = {**chunk, "usage": None}
        else:
            chunk = {k: v for k, v in chunk.items() if k != "usage"}
        return event(chunk)

    def _cap(self, chunk: dict[str, Any]) -> None:
        """Drop what goes past the cap; end a choice that reaches it."""
        assert self.cap is not None
        kept = []
        for choice in chunk.get("choices") or ():
            index = int(choice.get("index", 0))
            if index in self.ended:
                continue  # ended by the cap: what the model adds is not sent
            holder, text = _piece(choice)
            sent = self.texts.get(index, "")
            count = self.counts.get(index, 0) + (self.runtime.count_tokens(text) if text else 0)
            if count > self.cap:
                # The piecewise count errs high: count the whole text before cutting.
                count = self.runtime.count_tokens(sent + text)
                if count > self.cap:
                    allowed = self.runtime.truncate(sent + text, self.cap)
                    text = allowed[len(sent) :] if len(allowed) > len(sent) else ""
                    if holder is not None:
                        holder["content" if "content" in holder else "text"] = text
                    choice["finish_reason"] = "length"
                    count = self.runtime.count_tokens(sent + text)
                    self.cut = True
            self.texts[index] = sent + text
            self.counts[index] = count
            kept.append(choice)
        chunk["choices"] = kept

    def _settled_usage(self) -> dict[str, Any]:
        """The runtime's usage, or what was sent when the model went past its allowance."""
        usage = self.usage or {}
        completion = usage.get("completion_tokens")
        if self.cap is not None and (
            completion is None or int(completion) > self.cap * self.choices
        ):
            return {**usage, **self._counted(int(usage.get("prompt_tokens") or 0))}
        return usage

    def _counted(self, prompt: int | None = None) -> dict[str, int]:
        if prompt is None:
            prompt = self.runtime.prompt_tokens(self.body)
        completion = sum(self.runtime.count_tokens(t) for t in self.texts.values() if t)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    @property
    def _finished(self) -> bool:
        return self.cut and len(self.ended) >= self.choices

    async def __aiter__(self) -> AsyncIterator[bytes]:
        status = 200
        try:
            data = self._relay(self.first)
            if data:
                yield data
            try:
                if not self._finished:
                    async for chunk in self.chunks:
                        data = self._relay(chunk)
                        if data:
                            yield data
                        if self._finished:
                            break  # every choice is at its cap: stop the model
            except OpenMaaSError as exc:
                # The headers are gone; the error travels as the stream's last event.
                status = exc.status_code
                yield event(error_body("/v1", exc.status_code, exc.code, exc.message))
                return
            if self.cut and self.include_usage:
                yield event(
                    {
                        **{k: v for k, v in self.last.items() if k not in ("choices", "usage")},
                        "choices": [],
                        "usage": self._counted(),
                    }
                )
            yield DONE
        except BaseException:
            status = 499  # the client went away
            raise
        finally:
            try:
                self._count()
                close = getattr(self.chunks, "aclose", None)
                if close is not None:
                    await close()
            finally:
                await self.resources.aclose()
                await self.done(status)

    def _count(self) -> None:
        if not self.cut and self.usage is not None:
            usage = self._settled_usage()
            if usage.get("completion_tokens") is not None:
                self.call.input_tokens = int(usage.get("prompt_tokens") or 0)
                self.call.output_tokens = int(usage["completion_tokens"])
                return
        counted = self._counted()
        self.call.input_tokens = counted["prompt_tokens"]
        self.call.output_tokens = counted["completion_tokens"]


class EventStreamResponse(StreamingResponse):
    """A streamed response that coalesces its writes and notices a client leaving.

    Events that are ready together (an upstream sends several in one network read) leave
    in one write: the body is sent when the stream would wait, not once per event, which
    a small completion of seven events paid for in system calls and ASGI messages.
    Starlette's own response (for servers of ASGI spec 2.3, as uvicorn is) runs a task
    group and a cancel scope per response to notice a client that leaves; here a task
    waits for the disconnect and cancels the stream; the stream's ``finally`` meters what
    was sent, and the cancellation it caused is taken back.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        streaming = asyncio.current_task()
        assert streaming is not None
        left = False

        async def watch() -> None:
            nonlocal left
            while (await receive())["type"] != "http.disconnect":
                pass
            left = True
            streaming.cancel()

        watcher = asyncio.create_task(watch())
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            ready: list[bytes] = []
            chunks = aiter(self.body_iterator)
            while True:
                chunk, rest = _now(anext(chunks))  # type: ignore[arg-type]
                if rest is not None:
                    if ready:  # the stream must wait: send what it has first
                        await _send_body(send, ready, more=True)
                    try:
                        chunk = await rest
                    except StopAsyncIteration:
                        break
                elif chunk is _END:
                    break
                ready.append(self._bytes(chunk))
            await _send_body(send, ready, more=False)
        except asyncio.CancelledError:
            if not left:
                raise
            streaming.uncancel()
        finally:
            watcher.cancel()

    def _bytes(self, chunk: str | bytes | memoryview) -> bytes:
        if isinstance(chunk, bytes):
            return chunk
        if isinstance(chunk, memoryview):
            return bytes(chunk)
        return chunk.encode(self.charset)


async def _send_body(send: Send, ready: list[bytes], *, more: bool) -> None:
    body = ready[0] if len(ready) == 1 else b"".join(ready)
    ready.clear()
    await send({"type": "http.response.body", "body": body, "more_body": more})


_END = object()


def _now(step: Coroutine[Any, Any, Any]) -> tuple[Any, _Rest | None]:
    """Run ``step`` until it finishes or must wait: its value, or what is left to await.

    What ``await`` does, in two halves: the first runs now, in this task, and tells
    whether the value was ready without waiting (the events of one network read are).
    ``_END`` is the value of a step that ended the iteration.
    """
    try:
        waiting = step.send(None)
    except StopIteration as done:
        return done.value, None
    except StopAsyncIteration:
        return _END, None
    return None, _Rest(step, waiting)


class _Rest:
    """The second half of an ``await`` begun by ``_now``: hands the task what ``step``
    waits on and resumes it, as ``yield from`` would have."""

    def __init__(self, step: Coroutine[Any, Any, Any], waiting: Any) -> None:
        self.step = step
        self.waiting = waiting

    def __await__(self) -> Generator[Any, Any, Any]:
        waiting, step = self.waiting, self.step
        while True:
            try:
                sent = yield waiting
            except BaseException as exc:  # a cancellation reaches the step as it would
                try:
                    waiting = step.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    waiting = step.send(sent)
                except StopIteration as done:
                    return done.value

"""Server-sent events for streamed completions, metered even when the client leaves early."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
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


def _text_of(chunk: dict[str, Any]) -> str:
    parts = []
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta")
        text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
        if isinstance(text, str):
            parts.append(text)
    return "".join(parts)


class MeteredStream:
    """Relays a runtime's chunks as SSE and keeps count of what the client was sent.

    The runtime's final usage chunk is exact; a stream cut short (the client left, the
    upstream died) is metered from the text actually sent, counted with the model's
    tokenizer, and the prompt as counted before the stream began.
    """

    def __init__(
        self,
        *,
        call: Call,
        runtime: LanguageRuntime,
        chunks: AsyncIterator[dict[str, Any]],
        first: dict[str, Any],
        include_usage: bool,
        prompt_tokens: int,
        resources: AsyncExitStack,
        done: Callable[[int], Awaitable[None]],
    ) -> None:
        self.call = call
        self.runtime = runtime
        self.chunks = chunks
        self.first = first
        self.include_usage = include_usage
        self.prompt_tokens = prompt_tokens
        self.resources = resources
        self.done = done
        self.sent: list[str] = []
        self.usage: dict[str, Any] | None = None

    def _relay(self, chunk: dict[str, Any]) -> bytes | None:
        if chunk.get("usage") and not chunk.get("choices"):
            self.usage = chunk["usage"]
            return event(chunk) if self.include_usage else None
        self.sent.append(_text_of(chunk))
        if self.include_usage:
            # OpenAI's chunks before the last say ``"usage": null`` when usage was asked for.
            chunk = {**chunk, "usage": None}
        elif "usage" in chunk:
            chunk = {k: v for k, v in chunk.items() if k != "usage"}
        return event(chunk)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        status = 200
        try:
            data = self._relay(self.first)
            if data:
                yield data
            try:
                async for chunk in self.chunks:
                    data = self._relay(chunk)
                    if data:
                        yield data
            except OpenMaaSError as exc:
                # The headers are gone; the error travels as the stream's last event.
                status = exc.status_code
                yield event(error_body("/v1", exc.status_code, exc.code, exc.message))
                return
            yield DONE
        except BaseException:
            status = 499  # the client went away
            raise
        finally:
            self._count()
            await self.resources.aclose()
            await self.done(status)

    def _count(self) -> None:
        if self.usage is not None and self.usage.get("completion_tokens") is not None:
            self.call.input_tokens = int(self.usage.get("prompt_tokens") or 0)
            self.call.output_tokens = int(self.usage["completion_tokens"])
            return
        text = "".join(self.sent)
        self.call.input_tokens = self.prompt_tokens
        self.call.output_tokens = self.runtime.count_tokens(text) if text else 0


class EventStreamResponse(StreamingResponse):
    """A streamed response that notices a client leaving with one plain task.

    Starlette's own (for servers of ASGI spec 2.3, as uvicorn is) runs a task group and a
    cancel scope per response, a measurable share of a small streamed completion's cost.
    Here a task waits for the disconnect and cancels the stream; the stream's ``finally``
    meters what was sent, and the cancellation it caused is taken back.
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
            async for chunk in self.body_iterator:
                body = (
                    chunk
                    if isinstance(chunk, bytes)
                    else bytes(chunk)
                    if isinstance(chunk, memoryview)
                    else chunk.encode(self.charset)
                )
                await send({"type": "http.response.body", "body": body, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not left:
                raise
            streaming.uncancel()
        finally:
            watcher.cancel()

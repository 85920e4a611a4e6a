"""The event-stream response: events that are ready together leave in one write.

Driven as ASGI directly: what is checked is which messages the server is handed, which
no client can tell apart once TCP has joined the packets.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from openmaas.api.openai_stream import EventStreamResponse


async def _serve(events: AsyncIterator[bytes], disconnect: asyncio.Event | None = None) -> list:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if disconnect is None:
            await asyncio.Event().wait()
        else:
            await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    response = EventStreamResponse(events, media_type="text/event-stream")
    await response({"type": "http"}, receive, send)
    return sent


def _bodies(sent: list[dict[str, Any]]) -> list[tuple[bytes, bool]]:
    return [(m["body"], m["more_body"]) for m in sent if m["type"] == "http.response.body"]


def test_ready_events_are_joined_and_a_wait_flushes_them() -> None:
    async def events() -> AsyncIterator[bytes]:
        yield b"a"
        yield b"b"
        yield b"c"
        await asyncio.sleep(0.01)  # the upstream's next read: what is ready goes first
        yield b"d"
        await asyncio.sleep(0)
        yield b"e"
        yield b"f"

    sent = asyncio.run(_serve(events()))
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
    assert _bodies(sent) == [(b"abc", True), (b"d", True), (b"ef", False)]


def test_a_stream_that_ends_while_waiting_closes_the_body() -> None:
    async def events() -> AsyncIterator[bytes]:
        yield b"a"
        await asyncio.sleep(0)

    assert _bodies(asyncio.run(_serve(events()))) == [(b"a", True), (b"", False)]


def test_a_client_that_leaves_stops_the_stream_and_its_cleanup_runs() -> None:
    cleaned: list[str] = []
    gone = asyncio.Event()

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b"first"
            gone.set()  # the client leaves while the stream waits for more
            await asyncio.sleep(30)
            yield b"never"
        except asyncio.CancelledError:
            cleaned.append("cancelled")
            raise
        finally:
            cleaned.append("finally")

    async def run() -> list:
        return await asyncio.wait_for(_serve(events(), gone), timeout=10)

    sent = asyncio.run(run())
    assert _bodies(sent) == [(b"first", True)]
    assert cleaned == ["cancelled", "finally"]

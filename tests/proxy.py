"""A TCP proxy on loopback that a test controls, to make a dependency fail for real.

Between a server and its database (or bucket): ``down()`` refuses new connections and
drops open ones, as a stopped server does; ``hang()`` accepts and forwards nothing, as
an overloaded server or a broken network does; ``up()`` passes traffic again.
``corrupt_next_body()`` flips one byte of the next HTTP response body that passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any

from tests.servers import free_port

_CHUNK = 64 * 1024


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.hanging = False
        self._corrupt = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        self.up()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def _run(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    def up(self) -> None:
        self.hanging = False
        self._run(self._listen())

    def down(self) -> None:
        self.hanging = False
        self._run(self._close())

    def hang(self) -> None:
        self.hanging = True

    def corrupt_next_body(self) -> None:
        self._corrupt = True

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._accept, "127.0.0.1", self.port, reuse_address=True
            )

    async def _close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            self._writers.discard(writer)
            return
        self._writers.add(upstream_writer)
        await asyncio.gather(
            self._pipe(reader, upstream_writer, mangle=False),
            self._pipe(upstream_reader, writer, mangle=True),
            return_exceptions=True,
        )
        self._writers.discard(writer)
        self._writers.discard(upstream_writer)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, mangle: bool
    ) -> None:
        awaiting_body = False  # a response's headers passed without its body
        try:
            while data := await reader.read(_CHUNK):
                while self.hanging:
                    await asyncio.sleep(0.05)
                if mangle and self._corrupt:
                    data, awaiting_body = self._flip_body_byte(data, awaiting_body)
                writer.write(data)
                await writer.drain()
        finally:
            if self.hanging:
                writer.transport.abort()
            else:
                writer.close()

    def _flip_body_byte(self, data: bytes, awaiting_body: bool) -> tuple[bytes, bool]:
        if awaiting_body and not data.startswith(b"HTTP/"):
            at = 0
        else:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                return data, False
            at = end + 4
            if at >= len(data):
                return data, True
        self._corrupt = False
        return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :], False

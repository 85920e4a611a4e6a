"""The HTTP/1.1 parser the server runs: httptools, with the request head bounded.

uvicorn offers two parsers. h11 bounds the request line and headers, but parsing in pure
Python cost a fifth of the gateway's /v1 throughput in front of a fast backend. httptools
parses in C but buffers a request line or header of any length, so a client could make
the server hold gigabytes. This protocol keeps httptools and counts the bytes of each
request's head: past ``h11_max_incomplete_event_size`` (uvicorn's setting for the same
limit, which ``openmaas serve`` sets from ``OPENMAAS_MAX_HEADER_BYTES``) the request is
answered 431 and the connection closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DEFAULT_MAX_HEAD_BYTES = 64 * 1024
_REFUSAL = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/json\r\n"
    b"connection: close\r\n"
)
_BODY = (
    b'{"error":{"code":"headers_too_large",'
    b'"message":"the request line and headers are over the limit"}}'
)


class _HeadTooLarge(Exception):
    """Raised in a parser callback: httptools stops parsing and reports a parser error."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._max_head = config.h11_max_incomplete_event_size or DEFAULT_MAX_HEAD_BYTES
        # Two counts: the bytes read while a head is incomplete (a head that never ends is
        # refused before httptools buffers more than about the limit), and the head's exact
        # size once parsed (a head that ends just past the limit is refused too).
        self._read_in_head = 0
        self._head_size = 0
        self._in_head = True
        self._too_large = False

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._read_in_head += len(data)
        super().data_received(data)
        # Checked after parsing: a read that ends the head is not counted against it.
        if self._in_head and self._read_in_head > self._max_head:
            self._refuse()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_size = 0

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_size > self._max_head:
            self._too_large = True
            raise _HeadTooLarge
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        # The next request's head starts here. Bytes of it that came in the read that
        # ended this message go uncounted: at most one read, which the exact count covers.
        super().on_message_complete()
        self._in_head = True
        self._read_in_head = 0

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            self._refuse()
        else:
            super().send_400_response(msg)

    def _refuse(self) -> None:
        self._in_head = False
        if self.transport.is_closing():
            return
        self.logger.warning("a request's line and headers passed %d bytes", self._max_head)
        length = b"content-length: " + str(len(_BODY)).encode() + b"\r\n\r\n"
        self.transport.write(_REFUSAL + length + _BODY)
        self.transport.close()

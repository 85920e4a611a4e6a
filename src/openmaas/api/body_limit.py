"""Refuse request bodies past a size limit before they are read into memory or disk."""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openmaas.api.errors import error_body

# Artifact uploads may be far larger than any other body.
_UPLOAD_PATH = re.compile(r"^/models/[^/]+/versions/?$")


class BodySizeLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Multipart framing and form fields come on top of the artifact itself.
        self.max_upload_bytes = max_upload_bytes + 1024 * 1024

    def _limit_for(self, scope: Scope) -> int:
        if scope["method"] == "POST" and _UPLOAD_PATH.match(scope["path"]):
            return self.max_upload_bytes
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit_for(scope)
        declared = _content_length(scope)
        if declared is not None:
            if declared > limit:
                await _reject(scope, send, limit)
            else:
                # The server delivers no more than the declared length: nothing to count,
                # and every response message (each streamed chunk) skips a layer.
                await self.app(scope, receive, send)
            return
        state = {"received": 0, "rejected": False, "started": False}

        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > limit and not state["rejected"]:
                    state["rejected"] = True
                    if not state["started"]:
                        await _reject(scope, send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            # After a 413 has gone out, whatever the application answers is dropped.
            if state["rejected"]:
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not state["rejected"]:
                raise


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _reject(scope: Scope, send: Send, limit: int) -> None:
    body: Any = error_body(
        scope["path"], 413, "payload_too_large", f"request body larger than {limit} bytes"
    )
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})

"""A minimal OpenAI-compatible backend for gateway benchmarks: canned answers, no framework.

Raw ASGI on uvicorn so that the backend costs as little as possible and the numbers show
what a gateway in front of it adds. ``python benchmarks/fast_backend.py PORT``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import uvicorn

_ANSWER = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "echo",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from the fast backend."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15},
    }
).encode()


def _chunk(delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> bytes:
    body: dict[str, Any] = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "echo",
        "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage:
        body["usage"] = usage
    return b"data: " + json.dumps(body).encode() + b"\n\n"


_STREAM = b"".join(
    [
        _chunk({"role": "assistant", "content": ""}),
        *(_chunk({"content": word}) for word in ("Hello ", "from ", "the ", "fast ", "backend.")),
        _chunk({}, "stop"),
        _chunk({}, usage={"prompt_tokens": 9, "completion_tokens": 6, "total_tokens": 15}),
        b"data: [DONE]\n\n",
    ]
)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    streamed = b'"stream": true' in body or b'"stream":true' in body
    payload, kind = (_STREAM, b"text/event-stream") if streamed else (_ANSWER, b"application/json")
    headers = [(b"content-type", kind), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)

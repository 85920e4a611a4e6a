"""A small OpenAI-compatible server that answers predictably and fails on request.

It echoes the last user message (``"You said: ..."``), one word a token, one word a
streamed chunk; embeddings are unit vectors derived from a hash of the text. The
upstream model name chooses a misbehaviour, so one server serves every test at once:

* a name containing ``fail`` answers 500;
* ``reject`` answers 400 in OpenAI's error shape;
* ``stall`` sleeps ``stall_seconds`` (before answering, or after the first chunk);
* ``cut`` drops the connection after two chunks (a non-streamed answer is cut JSON);
* ``no-usage`` leaves ``usage`` out, streamed or not;
* ``error-event`` ends a stream with an in-band ``{"error": ...}`` event, as vLLM does;
* ``ignore-max`` ignores ``max_tokens`` and ``max_completion_tokens``: it says all it has.

Chat requests with ``tools`` (and a ``tool_choice`` other than ``none``) get a call of the
first tool; ``response_format`` ``json_object`` or ``json_schema`` gets JSON content;
``logprobs`` gets made-up log-probabilities of -0.5 per word.

``with FakeOpenAI() as fake: fake.url`` runs it on loopback; ``fake.requests`` keeps
every request body, ``fake.headers`` their headers and ``fake.calls`` counts the requests
per upstream model name.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from openmaas.testing.loopback import LoopbackServer


class _Cut(Exception):
    """Raised inside a streamed body: the server drops the connection mid-response."""


def _words(text: str) -> list[str]:
    return text.split()


def _user_text(body: dict[str, Any]) -> str:
    if "messages" in body:
        messages = [m for m in body["messages"] if m.get("role") == "user"] or body["messages"]
        content = messages[-1].get("content", "")
        return content if isinstance(content, str) else " ".join(p["text"] for p in content)
    prompt = body.get("prompt", "")
    if isinstance(prompt, str):
        return prompt
    # Token ids are echoed as numbers: [1, 2] and [[1, 2], [3]] read "1 2" and "1 2 3".
    flat = [p for item in prompt for p in (item if isinstance(item, list) else [item])]
    return " ".join(str(p) for p in flat)


def _logprobs(words: list[str], top: int) -> dict[str, Any]:
    """Made-up but well-formed chat log-probabilities: -0.5 for each word."""

    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

    content = [
        {**entry(w, -0.5), "top_logprobs": [entry(w, -0.5)] + [entry("x", -3.0)] * (top - 1)}
        for w in words
    ]
    return {"content": content, "refusal": None}


def _prompt_tokens(body: dict[str, Any]) -> int:
    if "messages" in body:
        return sum(len(_words(str(m.get("content", "")))) for m in body["messages"])
    return len(_words(_user_text(body)))


class FakeOpenAI:
    def __init__(self, *, stall_seconds: float = 5.0, dimensions: int = 8) -> None:
        self.stall_seconds = stall_seconds
        self.dimensions = dimensions
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.calls: Counter[str] = Counter()
        self.app = self._build()
        self._server: LoopbackServer | None = None

    @property
    def url(self) -> str:
        """The ``base_url`` to give a remote runtime (ends in ``/v1``)."""
        if self._server is None:
            raise RuntimeError("the fake server is not running")
        return f"{self._server.url}/v1"

    def __enter__(self) -> FakeOpenAI:
        self._server = LoopbackServer(self.app).start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def _reply(self, body: dict[str, Any]) -> tuple[list[str], str]:
        words = ["You", "said:", *_words(_user_text(body))]
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if "ignore-max" in str(body.get("model", "")):
            limit = None
        if limit is not None and len(words) > limit:
            return words[:limit], "length"
        return words, "stop"

    def _build(self) -> FastAPI:
        app = FastAPI()

        async def record(request: Request) -> dict[str, Any]:
            body = await request.json()
            self.calls[str(body.get("model", ""))] += 1
            self.requests.append(body)
            self.headers.append(dict(request.headers))
            return dict(body)

        async def misbehave(body: dict[str, Any]) -> Response | None:
            model = str(body.get("model", ""))
            if "fail" in model:
                return JSONResponse({"error": {"message": "the fake failed"}}, status_code=500)
            if "reject" in model:
                error = {"message": "the fake rejects this", "type": "invalid_request_error"}
                return JSONResponse({"error": error}, status_code=400)
            if "stall" in model and not body.get("stream"):
                await asyncio.sleep(self.stall_seconds)
            if "cut" in model and not body.get("stream"):
                return Response(b'{"id": "cmpl-cut", "choi', media_type="application/json")
            return None

        @app.post("/v1/chat/completions")
        async def chat(request: Request) -> Response:
            return await self._generate(await record(request), misbehave, chat=True)

        @app.post("/v1/completions")
        async def completions(request: Request) -> Response:
            return await self._generate(await record(request), misbehave, chat=False)

        @app.post("/v1/embeddings")
        async def embeddings(request: Request) -> Response:
            body = await record(request)
            failure = await misbehave(body)
            if failure is not None:
                return failure
            texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
            data = [
                {"object": "embedding", "index": i, "embedding": self.vector(str(t))}
                for i, t in enumerate(texts)
            ]
            answer: dict[str, Any] = {"object": "list", "data": data, "model": body["model"]}
            if "no-usage" not in body["model"]:
                tokens = sum(len(_words(str(t))) for t in texts)
                answer["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
            return JSONResponse(answer)

        @app.get("/v1/models")
        async def models() -> dict[str, Any]:
            return {"object": "list", "data": [{"id": "fake", "object": "model"}]}

        return app

    def vector(self, text: str) -> list[float]:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        values = np.random.default_rng(seed).normal(size=self.dimensions)
        return [float(x) for x in values / np.linalg.norm(values)]

    async def _generate(self, body: dict[str, Any], misbehave: Any, *, chat: bool) -> Response:
        failure = await misbehave(body)
        if failure is not None:
            return failure
        words, reason = self._reply(body)
        n = int(body.get("n") or 1)
        used = {
            "prompt_tokens": _prompt_tokens(body),
            "completion_tokens": len(words) * n,
            "total_tokens": _prompt_tokens(body) + len(words) * n,
        }
        if body.get("stream"):
            events = self._events(body, words, reason, used, chat=chat)
            return StreamingResponse(events, media_type="text/event-stream")
        text = " ".join(words)
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if chat and body.get("tools") and body.get("tool_choice", "auto") != "none":
            # Calls the first tool with what the user said.
            function = body["tools"][0]["function"]["name"]
            arguments = json.dumps({"text": _user_text(body)})
            call: dict[str, Any] = {"id": "call_1", "type": "function"}
            call["function"] = {"name": function, "arguments": arguments}
            message, reason = (
                {"role": "assistant", "content": None, "tool_calls": [call]},
                "tool_calls",
            )
        elif chat and (body.get("response_format") or {}).get("type") in (
            "json_object",
            "json_schema",
        ):
            message["content"] = json.dumps({"said": _user_text(body)})
        logprobs = None
        if chat and body.get("logprobs"):
            logprobs = _logprobs(words, int(body.get("top_logprobs") or 0))
        choices = [
            {"index": i, "message": message, "logprobs": logprobs, "finish_reason": reason}
            if chat
            else {"index": i, "text": text, "finish_reason": reason}
            for i in range(n)
        ]
        answer: dict[str, Any] = {
            "id": "chatcmpl-fake" if chat else "cmpl-fake",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": choices,
        }
        if "no-usage" not in body["model"]:
            answer["usage"] = used
        return JSONResponse(answer)

    async def _events(
        self,
        body: dict[str, Any],
        words: list[str],
        reason: str,
        used: dict[str, int],
        *,
        chat: bool,
    ) -> AsyncIterator[bytes]:
        model = str(body["model"])
        base = {
            "id": "chatcmpl-fake" if chat else "cmpl-fake",
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": model,
        }
        for position, word in enumerate(words):
            if position == 2 and "cut" in model:
                raise _Cut("the fake drops the connection")
            if position == 1 and "stall" in model:
                await asyncio.sleep(self.stall_seconds)
            if position == 2 and "error-event" in model:
                yield b'data: {"error": {"message": "the fake engine died", "code": 500}}\n\n'
                return
            text = word if position == 0 else f" {word}"
            last = position == len(words) - 1
            finish = reason if last else None
            choices = [
                {"index": i, "delta": {"content": text}, "finish_reason": finish}
                if chat
                else {"index": i, "text": text, "finish_reason": finish}
                for i in range(int(body.get("n") or 1))
            ]
            yield f"data: {json.dumps({**base, 'choices': choices})}\n\n".encode()
        include = (body.get("stream_options") or {}).get("include_usage")
        if include and "no-usage" not in model:
            yield f"data: {json.dumps({**base, 'choices': [], 'usage': used})}\n\n".encode()
        yield b"data: [DONE]\n\n"

"""Any OpenAI-compatible server (vLLM, Ollama, TGI, llama.cpp) as a language runtime.

The artifact is an ``*.openai.json`` file (keys in ``upstream``), for example
``{"base_url": "http://vllm:8000/v1", "model": "meta-llama/Llama-3.2-1B-Instruct"}``.
Registering does not contact the server: it may start later than the registry.

Requests pass through with ``model`` set to the upstream name; answers come back with the
client's name. Streams always ask the upstream for usage (``stream_options``) and end
with our own usage chunk. When the upstream reports no usage, tokens are counted with the
``tokenizer`` option (a local ``tokenizer.json`` or a directory holding one) or, without
it, estimated at four characters a token; a chat prompt is counted as its
``role: content`` lines. The ``max_tokens`` option (default 4096) is the output a request
that names no ``max_tokens`` may produce when a plan's token limits reserve it.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import anyio
import orjson

from openmaas.domain.errors import BadGateway, OpenMaaSError, ServiceUnavailable
from openmaas.domain.models import Signature
from openmaas.incidents import reported
from openmaas.runtimes import openai_objects as wire
from openmaas.runtimes.base import ArtifactSpec
from openmaas.runtimes.language import (
    GENERATION_SIGNATURE,
    ChatRuntime,
    EmbeddingRuntime,
    LanguageRuntime,
    request_texts,
    request_token_ids,
)
from openmaas.runtimes.upstream import (
    Endpoint,
    UpstreamClient,
    UpstreamResponse,
    client_for,
    endpoint_of,
    json_body,
    lines_of,
    raise_for_status,
    upstream_message,
)


def _tokenizer(location: str) -> Any:
    from tokenizers import Tokenizer

    path = Path(location).expanduser()
    return Tokenizer.from_file(str(path / "tokenizer.json" if path.is_dir() else path))


async def _sse_data(lines_in: AsyncIterator[str]) -> AsyncIterator[str]:
    """The ``data`` of each server-sent event (multi-line data joined, comments skipped)."""
    lines: list[str] = []
    async for line in lines_in:
        if not line:
            if lines:
                yield "\n".join(lines)
                lines = []
            continue
        field, _, value = line.partition(":")
        if field == "data":
            lines.append(value[1:] if value.startswith(" ") else value)
    if lines:
        yield "\n".join(lines)


class OpenAIRemoteRuntime(ChatRuntime, EmbeddingRuntime):
    name = "openai"
    suffixes = (".openai.json",)

    def __init__(self, spec: ArtifactSpec) -> None:
        super().__init__(spec)
        self._endpoint: Endpoint | None = None
        self._client: UpstreamClient | None = None
        self._tokenizer: Any = None

    @classmethod
    def inspect(cls, spec: ArtifactSpec) -> Signature:
        endpoint = endpoint_of(spec)
        if endpoint.settings.get("tokenizer"):
            _tokenizer(str(endpoint.settings["tokenizer"]))
        # On the tensor protocols a prompt goes in and text comes out, unless the version
        # was registered with an embedding signature (text in, FP32 vectors out).
        return spec.signature if not spec.signature.empty else GENERATION_SIGNATURE

    async def load(self) -> None:
        endpoint = endpoint_of(self.spec)
        location = endpoint.settings.get("tokenizer")
        if location:
            self._tokenizer = await anyio.to_thread.run_sync(_tokenizer, str(location))
        self._endpoint, self._client = endpoint, client_for(endpoint)
        if self.signature.empty:  # a version registered before it had one
            self.signature = GENERATION_SIGNATURE

    async def unload(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    @property
    def ready(self) -> bool:
        return self._client is not None

    def count_tokens(self, text: str) -> int:
        if self._tokenizer is not None:
            return len(self._tokenizer.encode(text, add_special_tokens=False).ids)
        return wire.approximate_tokens(text)

    def _connection(self) -> tuple[Endpoint, UpstreamClient]:
        if self._endpoint is None or self._client is None:
            raise ServiceUnavailable("the model is not loaded", code="not_loaded")
        return self._endpoint, self._client

    def _body(self, request: Mapping[str, Any], *, stream: bool | None) -> dict[str, Any]:
        endpoint, _client = self._connection()
        body = dict(request)
        body["model"] = endpoint.model or request.get("model")
        if stream is not None:
            body["stream"] = stream
        if stream:
            options = request.get("stream_options") or {}
            body["stream_options"] = {**options, "include_usage": True}
        return body

    def _model_name(self, request: Mapping[str, Any]) -> str:
        endpoint, _client = self._connection()
        return wire.response_model(request, endpoint.settings, endpoint.model or self.name)

    @property
    def default_max_tokens(self) -> int:  # type: ignore[override]
        settings = self._endpoint.settings if self._endpoint else {}
        return int(settings.get("max_tokens") or LanguageRuntime.default_max_tokens)

    def prompt_tokens(self, request: dict[str, Any]) -> int:
        return self._prompt_tokens(request)

    def prompt_tokens_at_most(self, request: dict[str, Any]) -> int:
        """The server applies its own chat template, which we cannot see: add OpenAI's
        published overhead (4 tokens a message, 3 to prime the reply). Without a tokenizer
        a token is taken as 3 bytes of UTF-8, where English runs about 4 characters."""
        texts = [t for t in request_texts(request) if t]
        if self._tokenizer is not None:
            counted = sum(self.count_tokens(text) for text in texts)
        else:
            counted = sum(math.ceil(len(text.encode()) / 3) for text in texts)
        if "messages" in request:
            counted += 4 * len(request.get("messages") or ()) + 3
        counted += request_token_ids(request)
        return max(counted, self._prompt_tokens(request))

    def _prompt_tokens(self, request: Mapping[str, Any]) -> int:
        if "messages" in request:
            lines = [f"{m['role']}: {m['content']}" for m in wire.chat_messages(request)]
            return self.count_tokens("\n".join(lines))
        if "prompt" in request:
            return sum(
                self.count_tokens(p) if isinstance(p, str) else len(p)
                for p in wire.prompts(request)
            )
        given = request.get("input")
        texts = [given] if isinstance(given, str) else given or []
        return sum(self.count_tokens(t) for t in texts if isinstance(t, str))

    async def _post(self, path: str, request: Mapping[str, Any]) -> dict[str, Any]:
        endpoint, client = self._connection()
        response = await client.request("POST", path, self._body(request, stream=None))
        raise_for_status(response, endpoint)
        answer = json_body(response)
        if not isinstance(answer, dict):
            raise BadGateway("the upstream server sent no JSON object", code="upstream_error")
        answer["model"] = self._model_name(request)
        return answer

    async def _generate(self, path: str, request: Mapping[str, Any]) -> dict[str, Any]:
        answer = await self._post(path, {**request, "stream": False})
        if not answer.get("usage"):
            completion = 0
            for choice in answer.get("choices") or []:
                text = (choice.get("message") or {}).get("content") or choice.get("text") or ""
                completion += self.count_tokens(str(text))
            answer["usage"] = wire.usage(self._prompt_tokens(request), completion)
        return answer

    async def chat(self, request: dict[str, Any]) -> dict[str, Any]:
        answer = await self._generate("/chat/completions", request)
        for choice in answer.get("choices") or ():
            message = choice.get("message") if isinstance(choice, dict) else None
            if isinstance(message, dict):
                message.setdefault("refusal", None)  # the spec requires it; some engines omit it
        return answer

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        return await self._generate("/completions", request)

    def chat_stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        return self._stream("/chat/completions", request, "chat.completion.chunk")

    def complete_stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        return self._stream("/completions", request, "text_completion")

    async def _stream(
        self, path: str, request: dict[str, Any], kind: str
    ) -> AsyncIterator[dict[str, Any]]:
        endpoint, client = self._connection()
        model = self._model_name(request)
        body = self._body(request, stream=True)
        last: dict[str, Any] = {"id": wire.new_id("chatcmpl"), "created": wire.now()}
        reported: dict[str, int] | None = None
        # Per choice, whole: a tokenizer counts a text, not the sum of its pieces.
        texts: dict[int, str] = {}

        def used() -> dict[str, int]:
            if reported is not None:
                return reported
            completion = sum(self.count_tokens(text) for text in texts.values())
            return wire.usage(self._prompt_tokens(request), completion)

        def usage_chunk() -> dict[str, Any]:
            return {**last, "object": kind, "model": model, "choices": [], "usage": used()}

        try:
            async with client.stream(path, body) as response:
                if response.status >= 400:
                    failed = UpstreamResponse(response.status, await response.read())
                    raise_for_status(failed, endpoint)
                finished = False
                async for data in _sse_data(lines_of(response)):
                    if data.strip() == "[DONE]":
                        finished = True
                        break
                    chunk = self._chunk(data)
                    reported = chunk.pop("usage", None) or reported
                    if not chunk.get("choices"):
                        continue  # the upstream's usage chunk: ours closes the stream
                    last = {"id": chunk.get("id", last["id"]), "created": chunk.get("created", 0)}
                    for choice in chunk["choices"]:
                        delta = choice.get("delta") or {}
                        piece = str(delta.get("content") or choice.get("text") or "")
                        index = int(choice.get("index", 0))
                        texts[index] = texts.get(index, "") + piece
                    chunk["model"] = model
                    yield chunk
                if not finished:
                    raise BadGateway(
                        "the upstream server ended the stream early", code="upstream_error"
                    )
        except OpenMaaSError:
            if texts:
                yield usage_chunk()
            raise
        yield usage_chunk()

    @staticmethod
    def _chunk(data: str) -> dict[str, Any]:
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise BadGateway(
                "the upstream server sent an invalid event", code="upstream_error"
            ) from exc
        if not isinstance(chunk, dict):
            raise BadGateway("the upstream server sent an invalid event", code="upstream_error")
        if "error" in chunk:
            raise reported(
                BadGateway,
                "the upstream server failed during the stream",
                code="upstream_error",
                detail=upstream_message(json.dumps(chunk).encode()),
            )
        return chunk

    async def embed(self, request: dict[str, Any]) -> dict[str, Any]:
        answer = await self._post("/embeddings", request)
        if not answer.get("usage"):
            tokens = self._prompt_tokens(request)
            answer["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        return answer

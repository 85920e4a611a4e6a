"""The OpenAI-compatible API (``/v1``): an adapter over the language runtimes."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

from fastapi import APIRouter, Request, Response

from openmaas import tracing
from openmaas.api.admission import NAMESPACE_HEADER, Call, dispatch, finish, reserve_tokens
from openmaas.api.deps import PlatformDep
from openmaas.api.errors import INFERENCE_ERRORS
from openmaas.api.openai_schemas import (
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    parse,
    payload,
)
from openmaas.api.openai_stream import EventStreamResponse, MeteredStream
from openmaas.api.wire import json_response, read_json
from openmaas.domain.deployments import DeploymentStatus
from openmaas.domain.errors import GatewayTimeout, NotFound, ServiceUnavailable
from openmaas.platform import Platform
from openmaas.runtimes.language import ChatRuntime, EmbeddingRuntime, LanguageRuntime
from openmaas.runtimes.openai_objects import usage as wire_usage
from openmaas.serving.endpoints import Endpoint

router = APIRouter(prefix="/v1", tags=["openai"], responses=INFERENCE_ERRORS)
# Runtime methods as OpenTelemetry's GenAI conventions name the operations.
_OPERATIONS = {"chat": "chat", "complete": "text_completion", "embed": "embeddings"}


def _endpoint(platform: Platform, model: str) -> Endpoint:
    """An endpoint name, a model name (newest version), ``name/2`` or ``name@alias``."""
    try:
        return platform.serving.table.reference(model)
    except NotFound as exc:
        raise NotFound(
            f"The model '{model}' does not exist or is not deployed",
            code="model_not_found",
            details={"param": "model"},
        ) from exc


def _is_language(endpoint: Endpoint) -> bool:
    return issubclass(endpoint.runtime_class, LanguageRuntime)


def _model_object(endpoint: Endpoint) -> dict[str, Any]:
    return {
        "id": endpoint.deployment.model_name,
        "object": "model",
        "created": int(endpoint.deployment.deployed_at.timestamp()),
        "owned_by": "openmaas",
    }


@router.get("/models")
async def list_models(request: Request, platform: PlatformDep) -> Response:
    """OpenAI's model list (language models), and KServe V1's ``models`` (every name)."""
    allowed = platform.gate.model_filter(request.headers)
    seen: dict[str, dict[str, Any]] = {}
    every: set[str] = set()
    for endpoint in platform.serving.table.by_name.values():
        name = endpoint.deployment.model_name
        if allowed(name):
            every.add(name)
            if name not in seen and _is_language(endpoint):
                seen[name] = _model_object(endpoint)
    data = sorted(seen.values(), key=lambda m: m["id"])
    return json_response({"object": "list", "data": data, "models": sorted(every)})


@router.get("/models/{model:path}")
async def get_model(model: str, request: Request, platform: PlatformDep) -> Response:
    """OpenAI's retrieve-model and KServe V1's readiness in one object.

    KServe clients read ``name`` and ``ready``, and a model that is not ready yet is a 503;
    OpenAI clients read ``id``. A ModelRoute is ready when one of its destinations is.
    """
    allowed = platform.gate.model_filter(request.headers)
    route = platform.routing.table.get(model, request.headers.get(NAMESPACE_HEADER))
    if route is not None and allowed(model):
        states = [platform.routing.describe(route)["status"]["phase"]]
        found = {"id": model, "object": "model", "created": 0, "owned_by": "openmaas"}
        ready = states == ["Active"]
    else:
        endpoint = _endpoint(platform, model)
        if not allowed(endpoint.deployment.model_name):
            raise NotFound(f"The model '{model}' does not exist", code="model_not_found")
        found = {**_model_object(endpoint), "id": model}
        ready = endpoint.deployment.status is DeploymentStatus.ACTIVE
    if not ready:
        raise ServiceUnavailable(f"model {model!r} is not ready", code="model_not_ready")
    return json_response({**found, "name": model, "ready": True})


def _choices(parsed: Any) -> int:
    """How many texts the request asks for: ``n`` for each prompt."""
    n = int(getattr(parsed, "n", 1) or 1)
    prompt = parsed.prompt if isinstance(parsed, CompletionRequest) else None
    # A list of texts (or of token-id lists) is several prompts; a list of ids is one.
    if isinstance(prompt, list) and not all(isinstance(item, int) for item in prompt):
        n *= len(prompt)
    return n


async def _reserve(
    platform: Platform, call: Call, runtime: LanguageRuntime, parsed: Any, body: dict[str, Any]
) -> int | None:
    """Reserve the request's tokens before the model runs; the output cap per choice.

    Once per request, even when a route tries several destinations. When an output or
    total token limit applies, the body's ``max_tokens`` is lowered to the allowance
    (None: no limit caps the output, the body stays as the client sent it).
    """
    embedding = isinstance(parsed, EmbeddingRequest)
    asked = None if embedding else parsed.max_completion_tokens or parsed.max_tokens
    cap = await reserve_tokens(
        platform, call, runtime, body, choices=_choices(parsed), asked=asked, embedding=embedding
    )
    if cap is None:
        return None
    if parsed.max_completion_tokens is not None:
        body["max_completion_tokens"] = cap
    if parsed.max_tokens is not None or parsed.max_completion_tokens is None:
        body["max_tokens"] = cap
    return cap


def _within(result: dict[str, Any], cap: int, runtime: LanguageRuntime) -> dict[str, int]:
    """The answer's usage, its choices cut to ``cap`` tokens when the model went past it.

    A model that ignored the lowered ``max_tokens`` is answered up to the allowance, as
    a capped one would have been (``finish_reason: "length"``), and charged for that.
    """
    usage = result.get("usage") or {}
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    choices = result.get("choices") or []
    if completion <= cap * max(1, len(choices)):
        return {"prompt_tokens": prompt, "completion_tokens": completion}
    completion = 0
    for choice in choices:
        message = choice.get("message")
        holder = message if isinstance(message, dict) else choice
        field = "content" if holder is message else "text"
        text = holder.get(field)
        if not isinstance(text, str):
            continue
        count = runtime.count_tokens(text)
        if count > cap:
            holder[field] = text = runtime.truncate(text, cap)
            count = runtime.count_tokens(text)
            choice["finish_reason"] = "length"
        completion += count
    result["usage"] = {**usage, **wire_usage(prompt, completion)}
    return {"prompt_tokens": prompt, "completion_tokens": completion}


async def _answer(
    platform: Platform, request: Request, parsed: Any, kind: type[LanguageRuntime], method: str
) -> Response:
    body = payload(parsed)

    async def run(call: Call, endpoint: Endpoint) -> Response:
        if call.span is not None:
            tracing.describe_generation(call.span, _OPERATIONS[method], parsed.model, body)
        if getattr(parsed, "stream", False):
            return await _stream(platform, request, call, endpoint, kind, method, parsed, body)
        timeout = endpoint.deployment.config.timeout_s
        async with platform.serving.dataplane.session(endpoint, kind, protocol="openai") as rt:
            cap = await _reserve(platform, call, rt, parsed, body)
            try:
                async with asyncio.timeout(timeout):
                    result: dict[str, Any] = await getattr(rt, method)(body)
            except TimeoutError as exc:
                raise GatewayTimeout(
                    f"the model did not answer within {timeout} s", code="timeout"
                ) from exc
            usage = _within(result, cap, rt) if cap is not None else result.get("usage") or {}
        call.input_tokens = int(usage.get("prompt_tokens") or 0)
        call.output_tokens = int(usage.get("completion_tokens") or 0)
        response = json_response(result)
        assert call.reservation is not None
        response.headers.update(
            call.reservation.openai_headers(call.input_tokens, call.output_tokens)
        )
        return response

    return await dispatch(
        platform, request, parsed.model, "openai", lambda: _endpoint(platform, parsed.model), run
    )


async def _stream(
    platform: Platform,
    request: Request,
    call: Call,
    endpoint: Endpoint,
    kind: type[LanguageRuntime],
    method: str,
    parsed: Any,
    body: dict[str, Any],
) -> Response:
    resources = AsyncExitStack()
    try:
        runtime: LanguageRuntime = await resources.enter_async_context(
            platform.serving.dataplane.session(endpoint, kind, protocol="openai")
        )
        cap = await _reserve(platform, call, runtime, parsed, body)
        chunks = getattr(runtime, f"{method}_stream")(body)
        # The first chunk before the headers: an early failure is still a plain HTTP error.
        first = await anext(aiter(chunks))
    except BaseException:
        await resources.aclose()
        raise
    options = parsed.stream_options
    stream = MeteredStream(
        call=call,
        runtime=runtime,
        body=body,
        chunks=chunks,
        first=first,
        include_usage=bool(options and options.include_usage),
        cap=cap,
        choices=_choices(parsed),
        resources=resources,
        done=lambda status: finish(platform, request, call, status),
    )
    call.streaming = True
    assert call.reservation is not None
    headers = {"Cache-Control": "no-cache", **call.reservation.openai_headers()}
    return EventStreamResponse(aiter(stream), media_type="text/event-stream", headers=headers)


@router.post("/chat/completions")
async def chat_completions(request: Request, platform: PlatformDep) -> Response:
    parsed = parse(ChatRequest, await read_json(request))
    return await _answer(platform, request, parsed, ChatRuntime, "chat")


@router.post("/completions")
async def completions(request: Request, platform: PlatformDep) -> Response:
    parsed = parse(CompletionRequest, await read_json(request))
    return await _answer(platform, request, parsed, ChatRuntime, "complete")


@router.post("/embeddings")
async def embeddings(request: Request, platform: PlatformDep) -> Response:
    parsed = parse(EmbeddingRequest, await read_json(request))
    return await _answer(platform, request, parsed, EmbeddingRuntime, "embed")

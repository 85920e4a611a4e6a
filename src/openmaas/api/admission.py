"""The policy around every inference request: admission by the gate, then a usage record.

No database I/O: the gate reads the in-memory snapshot (and the limit counters), the
usage recorder aggregates in memory and flushes in batches. Models that read no tokens
are counted against the request limits just before they run; language models, whatever
the protocol, reserve their tokens with the request once the prompt is counted
(``reserve_tokens``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import Request, Response

from openmaas import tracing
from openmaas.access import Demand
from openmaas.access.gate import Admission, Reservation
from openmaas.domain.deployments import DeploymentConfig
from openmaas.domain.errors import OpenMaaSError
from openmaas.domain.usage import UsageEvent
from openmaas.platform import Platform
from openmaas.routing.table import CompiledRoute
from openmaas.runtimes.language import LanguageRuntime
from openmaas.serving.endpoints import Endpoint
from openmaas.serving.input_limits import count_prompt_tokens
from openmaas.serving.language_tensors import speaks_text

IDENTITY = "openmaas.identity"
"""The scope key of the caller's identity, when the request's entry already checked its key."""


@dataclass
class Call:
    """What one inference request turned out to be, filled in as it runs."""

    model: str
    protocol: str
    admission: Admission | None = None
    reservation: Reservation | None = None
    endpoint: Endpoint | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    started: float = 0.0
    streaming: bool = False
    """Set by a handler whose response streams: the stream records the usage when it ends."""
    span: Any = None
    """The request's trace span when tracing is on (``openmaas.tracing``)."""


async def metered(
    platform: Platform,
    request: Request,
    call: Call,
    handle: Callable[[Call], Awaitable[Response]],
) -> Response:
    if tracing.active is None:
        return await _metered(platform, request, call, handle)
    name, attributes = _request_attributes(request, call)
    with tracing.request_span(name, request.headers, attributes) as root:
        call.span = root
        return await _metered(platform, request, call, handle)


def _request_attributes(request: Request, call: Call) -> tuple[str, dict[str, Any]]:
    operation = "predict" if call.protocol == "predict" else "infer"
    return f"{operation} {call.model}", {
        "gen_ai.operation.name": operation,
        "gen_ai.provider.name": "openmaas",
        "gen_ai.request.model": call.model,
        "openmaas.protocol": call.protocol,
        "http.request.method": request.method,
        "url.path": request.url.path,
    }


async def _metered(
    platform: Platform,
    request: Request,
    call: Call,
    handle: Callable[[Call], Awaitable[Response]],
) -> Response:
    call.started = time.perf_counter()
    status = 500
    try:
        identity = request.scope.get(IDENTITY)
        if call.span is None:
            call.admission = await platform.gate.admit(request.headers, call.model, identity)
        else:
            with tracing.span("openmaas.admission"):
                call.admission = await platform.gate.admit(request.headers, call.model, identity)
        response = await handle(call)
        status = response.status_code
        if call.reservation is not None:
            response.headers.update(call.reservation.headers())
        return response
    except OpenMaaSError as exc:
        status = exc.status_code
        call.streaming = False
        raise
    finally:
        if not call.streaming:
            await finish(platform, request, call, status)


async def finish(platform: Platform, request: Request, call: Call, status: int) -> None:
    """Record the call's usage and settle its tokens: once, when its answer is complete."""
    if call.reservation is not None:
        await platform.gate.settle(call.reservation, call.input_tokens, call.output_tokens)
    if call.span is not None:
        tracing.end(call.span, status, _outcome(call))
    if status == 401:
        return  # a caller we cannot name has no account to meter
    _record(platform, request, call, status, time.perf_counter() - call.started)


def _model_label(platform: Platform, call: Call) -> str:
    """The model a request's metrics name: one that answered, or a known name; any other
    name a caller sent is "other", so callers cannot make series without end."""
    if call.endpoint is not None:
        return call.endpoint.deployment.model_name
    known = call.model in platform.serving.table.by_model or platform.routing.table.get(call.model)
    return call.model if known else "other"


def _outcome(call: Call) -> dict[str, Any]:
    """What a request turned out to be, for its span: who answered, for whom, with what."""
    found: dict[str, Any] = {
        "gen_ai.usage.input_tokens": call.input_tokens,
        "gen_ai.usage.output_tokens": call.output_tokens,
    }
    if call.endpoint is not None:
        deployment = call.endpoint.deployment
        found["gen_ai.response.model"] = deployment.model_name
        found["openmaas.endpoint"] = deployment.endpoint_name
        found["openmaas.model.version"] = deployment.version
    if call.admission is not None:
        found["openmaas.plan"] = call.admission.plan or ""
        if call.admission.application_id is not None:
            found["openmaas.application.id"] = call.admission.application_id
    return found


def _record(platform: Platform, request: Request, call: Call, status: int, seconds: float) -> None:
    if call.admission is not None:
        admission = call.admission
        user_id = admission.principal.user_id
        application_id, key_id = admission.application_id, admission.key_id
    else:
        who = platform.gate.attribute(request.headers)
        user_id, application_id, key_id = who.user_id, who.application_id, who.key_id
    endpoint = call.endpoint
    platform.serving.metrics.count_request(
        _model_label(platform, call),
        (call.admission.plan if call.admission else None) or "none",
        call.protocol,
        status,
        call.input_tokens,
        call.output_tokens,
    )
    platform.usage.record(
        UsageEvent(
            at=datetime.now(UTC),
            user_id=user_id,
            application_id=application_id,
            key_id=key_id,
            model=endpoint.deployment.model_name if endpoint else call.model,
            version=endpoint.deployment.version if endpoint else None,
            endpoint=endpoint.name if endpoint else None,
            protocol=call.protocol,
            status=status,
            latency_ms=seconds * 1000,
            input_tokens=call.input_tokens,
            output_tokens=call.output_tokens,
            terms=call.admission.terms if call.admission is not None else None,
        )
    )


ROUTE_HEADER = "X-OpenMaaS-Route-Destination"
NAMESPACE_HEADER = "x-openmaas-namespace"
"""Names the namespace of the ModelRoute a request means; without it, ``default``."""
_NO_QUERY: dict[str, str] = {}


async def dispatch(
    platform: Platform,
    request: Request,
    name: str,
    protocol: str,
    lookup: Callable[[], Endpoint],
    run: Callable[[Call, Endpoint], Awaitable[Response]],
    *,
    model: str | None = None,
    routable: bool = True,
    by_path: bool = False,
) -> Response:
    """Serve ``name``: through its ModelRoute when it names one, else the endpoint found.

    The plan's model filter applies to the name the caller used; the usage record names
    the model that answered. ``model`` names the model for the gate when it is known
    without looking the endpoint up (which would answer 404 before 401). ``by_path``: a
    name that is no route and no model may reach a route by its ``path`` rules.
    """
    route = _route(platform, request, name, by_path) if routable else None
    if route is None:
        if model is None:
            model = lookup().deployment.model_name

        async def direct(call: Call) -> Response:
            call.endpoint = lookup()
            await _reserve_request(platform, call, call.endpoint)
            return await run(call, call.endpoint)

        return await metered(platform, request, Call(model, protocol), direct)
    # Query parameters are parsed only for a route that matches on them.
    query = request.query_params if route.reads_query else _NO_QUERY
    attempts = route.attempts(request.headers, query, request.scope["path"])

    async def routed(call: Call) -> Response:
        async def invoke(endpoint: Endpoint) -> Response:
            call.endpoint = endpoint
            await _reserve_request(platform, call, endpoint)
            return await run(call, endpoint)

        if call.span is None:
            response, destination = await platform.routing.execute(route, attempts, invoke)
        else:
            with tracing.span("openmaas.routing", {"openmaas.route": route.label}) as current:
                response, destination = await platform.routing.execute(route, attempts, invoke)
                current.set_attribute("openmaas.route.destination", destination)
        response.headers[ROUTE_HEADER] = destination
        return response

    return await metered(platform, request, Call(route.name, protocol), routed)


async def _reserve_request(platform: Platform, call: Call, endpoint: Endpoint) -> None:
    """A model that reads no tokens takes one request from the limits, once per call.

    A language model's request is reserved with its tokens (``reserve_tokens``), by
    whichever protocol reached it, once its prompt is counted.
    """
    if call.reservation is None and not speaks_text(endpoint):
        assert call.admission is not None
        call.reservation = await platform.gate.reserve(call.admission)


async def reserve_tokens(
    platform: Platform,
    call: Call,
    runtime: LanguageRuntime,
    body: dict[str, Any],
    *,
    choices: int,
    asked: int | None,
    embedding: bool,
) -> int | None:
    """Reserve a language model's request and tokens before it runs; the cap per choice.

    Once per request, even when a route tries several destinations: the prompt as the
    runtime counts it, and for generation ``asked`` output tokens per choice (or the
    runtime's default cap), at least one per choice. None: no limit caps the output.
    """
    assert call.admission is not None
    if call.reservation is None:
        config = call.endpoint.deployment.config if call.endpoint else DeploymentConfig()
        counted = await platform.serving.input_limits.check_prompt(config, runtime, body)
        terms = call.admission.terms
        prompt = 0
        if terms and terms.token_limits:
            prompt = counted if counted is not None else await count_prompt_tokens(runtime, body)
        if embedding:
            demand = Demand(input_tokens=prompt)
        else:
            wanted = (asked or runtime.default_max_tokens) * choices
            demand = Demand(input_tokens=prompt, output_tokens=wanted, least_output=choices)
        call.reservation = await platform.gate.reserve(call.admission, demand)
    if embedding or not call.reservation.caps_output:
        return None
    return call.reservation.allowance // choices


def _route(platform: Platform, request: Request, name: str, by_path: bool) -> CompiledRoute | None:
    """The ModelRoute a request means: by name (in its namespace), else by path.

    The namespace header is read only when some route lives outside the default
    namespace, and path rules only when some route has one and ``name`` is no model.
    """
    table = platform.routing.table
    namespace = request.headers.get(NAMESPACE_HEADER) if table.namespaced else None
    route = table.get(name, namespace)
    if route is None and by_path and table.by_path and not platform.serving.table.knows(name):
        route = table.for_path(request.scope["path"], namespace)
    return route

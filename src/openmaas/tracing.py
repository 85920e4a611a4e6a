"""OpenTelemetry traces of inference requests: off, and free, unless an endpoint is set.

With ``OPENMAAS_OTEL_ENDPOINT`` (an OTLP/HTTP collector, ``http://collector:4318``) every
inference request is one span named as OpenTelemetry's GenAI conventions name them
(``chat tiny-chat``, ``embeddings all-minilm-l6-v2``, ``predict binary_classifier``), with
``gen_ai.*`` attributes (request model, response model, token usage, request settings),
and children for admission (keys, plans, limits), routing, the model and the upstream call.
An incoming ``traceparent`` is continued; upstream calls carry ours.

Without it, nothing is imported from OpenTelemetry and no span object is ever made: every
helper here returns at once (``active is None``). The instrumented code paths are shared
by every protocol (the data plane, the routing service, the upstream client), so the
tracer is this module's state, set when the application starts and cleared when it stops,
as OpenTelemetry's own global tracer provider would be.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

active: Tracer | None = None
"""The tracer of the running application; None when tracing is off."""

_NOTHING = contextlib.nullcontext(None)


def enable(provider: TracerProvider) -> None:
    global active
    active = provider.get_tracer("openmaas")


def disable() -> None:
    global active
    active = None


def provider_for(endpoint: str, service_name: str) -> TracerProvider:
    """A provider that batches spans to the OTLP/HTTP collector at ``endpoint``."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    exporter = OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def span(name: str, attributes: Mapping[str, Any] | None = None) -> Any:
    """A child span, current while the block runs; a shared no-op when tracing is off.

    For work that is awaited within the request; a stream's spans use ``start``.
    """
    tracer = active
    if tracer is None:
        return _NOTHING
    return tracer.start_as_current_span(name, attributes=attributes)


def start(name: str, attributes: Mapping[str, Any] | None = None) -> Span | None:
    """A child of the current span that the caller ends, and that is not made current:
    it may outlive the request handler (a stream) without disturbing its context."""
    tracer = active
    if tracer is None:
        return None
    return tracer.start_span(name, attributes=attributes)


@contextlib.contextmanager
def request_span(
    name: str, headers: Mapping[str, str], attributes: Mapping[str, Any]
) -> Iterator[Span | None]:
    """The span of one inference request, current while the handler runs.

    It continues the caller's trace (``traceparent``) and is not ended here: the request
    ends it when its answer is complete, which for a stream is later (``end``).
    """
    tracer = active
    if tracer is None:
        yield None
        return
    from opentelemetry import context, propagate, trace

    parent = propagate.extract(headers)
    root = tracer.start_span(
        name, context=parent, kind=trace.SpanKind.SERVER, attributes=attributes
    )
    token = context.attach(trace.set_span_in_context(root, parent))
    try:
        yield root
    finally:
        context.detach(token)


_GENERATION_SETTINGS = (
    ("max_tokens", "gen_ai.request.max_tokens"),
    ("max_completion_tokens", "gen_ai.request.max_tokens"),
    ("temperature", "gen_ai.request.temperature"),
    ("top_p", "gen_ai.request.top_p"),
    ("top_k", "gen_ai.request.top_k"),
    ("seed", "gen_ai.request.seed"),
    ("n", "gen_ai.request.choice.count"),
    ("frequency_penalty", "gen_ai.request.frequency_penalty"),
    ("presence_penalty", "gen_ai.request.presence_penalty"),
)


def describe_generation(
    current: Span, operation: str, model: str, request: Mapping[str, Any]
) -> None:
    """Name a ``/v1`` request's span after its operation and add what it asked for."""
    current.update_name(f"{operation} {model}")
    current.set_attribute("gen_ai.operation.name", operation)
    for field, attribute in _GENERATION_SETTINGS:
        value = request.get(field)
        if isinstance(value, int | float) and not isinstance(value, bool):
            current.set_attribute(attribute, value)
    stop = request.get("stop")
    if stop:
        current.set_attribute(
            "gen_ai.request.stop_sequences", [stop] if isinstance(stop, str) else list(stop)
        )
    if request.get("encoding_format"):
        current.set_attribute("gen_ai.request.encoding_formats", [str(request["encoding_format"])])


def end(current: Span | None, status: int, attributes: Mapping[str, Any] | None = None) -> None:
    """Close a request's span with its HTTP status (a server error marks it failed)."""
    if current is None:
        return
    from opentelemetry.trace import Status, StatusCode

    if attributes:
        current.set_attributes(attributes)
    current.set_attribute("http.response.status_code", status)
    if status >= 500:
        current.set_status(Status(StatusCode.ERROR))
        current.set_attribute("error.type", str(status))
    current.end()


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current trace's ``traceparent`` to an upstream request's headers."""
    if active is None:
        return
    from opentelemetry import propagate

    propagate.inject(headers)

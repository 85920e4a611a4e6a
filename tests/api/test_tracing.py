"""OpenTelemetry traces of inference requests, caught by the SDK's in-memory exporter."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from openmaas import tracing
from openmaas.app import create_app
from openmaas.demo.tiny_llm import tiny_llm_archive
from openmaas.testing import FakeOpenAI
from tests.conftest import ADMIN_KEY, make_settings
from tests.models import classifier
from tests.routing.documents import route, to
from tests.servers import running
from tests.serving.helpers import deploy, register, register_estimator

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@dataclass
class Traced:
    url: str
    admin: httpx.Client
    spans: InMemorySpanExporter
    fake: FakeOpenAI
    names: dict[str, str]


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    data = tmp_path_factory.mktemp("traced")
    app = create_app(make_settings(data), tracer_provider=provider)
    with FakeOpenAI() as fake, running(app) as server:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as admin:
            suffix = secrets.token_hex(3)
            names = {"tiny": f"tiny-{suffix}", "echo": f"echo-{suffix}", "clf": f"clf-{suffix}"}
            register(admin, names["tiny"], tiny_llm_archive(data), runtime="transformers")
            endpoint = data / "echo.openai.json"
            endpoint.write_text(json.dumps({"base_url": fake.url, "model": "echo"}))
            register(admin, names["echo"], endpoint)
            register_estimator(admin, names["clf"], classifier(), data)
            for name in names.values():
                deploy(admin, name, endpoint_name=name)
            names["route"] = f"route-{suffix}"
            created = admin.post("/routes", json=route(names["route"], [to(names["clf"])]))
            assert created.status_code == 201, created.text
            yield Traced(server.url, admin, spans, fake, names)
    assert tracing.active is None  # stopping the application turned tracing off


def _tree(spans: InMemorySpanExporter, name: str) -> tuple[ReadableSpan, list[ReadableSpan]]:
    """The request span called ``name`` and every span of its trace."""
    finished = list(spans.get_finished_spans())
    root = next(s for s in finished if s.name == name)
    trace = [s for s in finished if s.context.trace_id == root.context.trace_id]
    return root, trace


def _children(root: ReadableSpan, trace: list[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {
        s.name: s
        for s in trace
        if s.parent is not None and s.parent.span_id == root.context.span_id
    }


def test_a_chat_request_is_one_span_with_genai_attributes(traced: Traced) -> None:
    traced.spans.clear()
    client = openai.OpenAI(base_url=f"{traced.url}/v1", api_key=ADMIN_KEY, max_retries=0)
    answer = client.chat.completions.create(
        model=traced.names["tiny"],
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=5,
        temperature=0.5,
        extra_headers={"traceparent": TRACEPARENT},
    )
    root, trace = _tree(traced.spans, f"chat {traced.names['tiny']}")
    assert f"{root.context.trace_id:032x}" == TRACE_ID  # the caller's trace goes on
    attributes: dict[str, Any] = dict(root.attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == traced.names["tiny"]
    assert attributes["gen_ai.response.model"] == traced.names["tiny"]
    assert attributes["gen_ai.request.max_tokens"] == 5
    assert attributes["gen_ai.request.temperature"] == 0.5
    assert answer.usage is not None
    assert attributes["gen_ai.usage.input_tokens"] == answer.usage.prompt_tokens
    assert attributes["gen_ai.usage.output_tokens"] == answer.usage.completion_tokens
    assert attributes["http.response.status_code"] == 200
    children = _children(root, trace)
    assert {"openmaas.admission", "openmaas.model"} <= set(children)
    assert children["openmaas.model"].attributes["openmaas.runtime"] == "transformers"


def test_a_stream_to_an_upstream_is_traced_end_to_end(traced: Traced) -> None:
    traced.spans.clear()
    client = openai.OpenAI(base_url=f"{traced.url}/v1", api_key=ADMIN_KEY, max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model=traced.names["echo"],
            messages=[{"role": "user", "content": "one two"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    root, trace = _tree(traced.spans, f"chat {traced.names['echo']}")
    usage = chunks[-1].usage
    assert usage is not None
    assert root.attributes["gen_ai.usage.output_tokens"] == usage.completion_tokens
    model = _children(root, trace)["openmaas.model"]
    upstream = next(s for s in trace if s.name == "openmaas.upstream")
    assert upstream.parent is not None and upstream.attributes["server.address"] == "127.0.0.1"
    assert root.end_time is not None and model.end_time is not None
    # The upstream was told the trace, so its own spans join it.
    sent = traced.fake.headers[-1]["traceparent"]
    assert sent.split("-")[1] == f"{root.context.trace_id:032x}"


def test_a_routed_tensor_request_has_a_routing_span(traced: Traced) -> None:
    traced.spans.clear()
    answer = traced.admin.post(
        "/predict", json={"model_name": traced.names["route"], "input": [0.1, 0.2, 0.3]}
    )
    assert answer.status_code == 200, answer.text
    root, trace = _tree(traced.spans, f"predict {traced.names['route']}")
    routing = _children(root, trace)["openmaas.routing"]
    assert routing.attributes["openmaas.route.destination"] == traced.names["clf"]
    model = next(s for s in trace if s.name == "openmaas.model")
    assert model.parent is not None and model.parent.span_id == routing.context.span_id
    failed = traced.admin.post("/predict", json={"model_name": "ghost", "input": [1]})
    assert failed.status_code == 404
    ghost, _trace = _tree(traced.spans, "predict ghost")
    assert ghost.attributes["http.response.status_code"] == 404


def test_the_collector_provider_samples_as_opentelemetry_variables_say(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tracing every request costs half the throughput at concurrency 32; the standard
    ``OTEL_TRACES_SAMPLER`` variables choose a share, and unchosen traces record nothing."""
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    provider = tracing.provider_for("http://127.0.0.1:9", "openmaas")
    try:
        assert "TraceIdRatioBased{0.25}" in provider.sampler.get_description()
        tracer = provider.get_tracer("openmaas-test")
        recorded = [tracer.start_span("infer").is_recording() for _ in range(400)]
        assert 40 < sum(recorded) < 160  # about a quarter of 400 root spans
    finally:
        provider.shutdown()

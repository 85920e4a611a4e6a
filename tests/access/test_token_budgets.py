"""Token budgets on /v1: reserved before the model runs, capped, settled to real counts.

A fake OpenAI-compatible upstream on loopback plays the model (it counts the calls it
gets and, for an ``ignore-max`` model name, ignores the output cap); requests go through
the ``openai`` SDK or plain HTTP to the product's own routes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from openmaas.app import create_app
from openmaas.testing import FakeOpenAI
from tests.access.budgets import (
    PROMPT,
    assert_within_budget,
    chat_burst,
    remote_model,
    unique,
)
from tests.accounts import Factory
from tests.conftest import ADMIN_KEY, Platform, make_settings
from tests.servers import drop_redis_prefix, redis_or_skip, running, unique_redis_prefix


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def models(
    platform: Platform, fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """Remote models on the shared platform: name -> upstream name (counted by the fake)."""
    directory = tmp_path_factory.mktemp("budgets")
    names = {}
    for role, upstream in (
        ("echo", unique("echo")),
        ("greedy", unique("ignore-max")),
        ("tiny", unique("echo")),
        ("other", unique("echo")),
    ):
        name = unique("tiny" if role == "tiny" else f"budget-{role}")
        remote_model(platform.admin, name, fake.url, upstream, directory)
        names[role] = name
        names[f"{role}-upstream"] = upstream
    return names


@pytest.fixture(scope="module")
def redis_server(
    fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, str]]:
    """A server counting limits in Redis: its URL, a model and its upstream name."""
    url = redis_or_skip()
    prefix = unique_redis_prefix()
    directory = tmp_path_factory.mktemp("budgets-redis")
    settings = make_settings(directory, redis_url=url, redis_prefix=prefix)
    try:
        with running(create_app(settings)) as server:
            headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
            with httpx.Client(base_url=server.url, headers=headers, timeout=60) as admin:
                upstream = unique("echo")
                model = remote_model(admin, unique("redis-echo"), fake.url, upstream, directory)
            yield server.url, model, upstream
    finally:
        drop_redis_prefix(prefix)


def _client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)


def _chat(client: openai.OpenAI, model: str, max_tokens: int = 30, text: str = PROMPT) -> object:
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], max_tokens=max_tokens
    )


def _usage_total(developer: object, expected_requests: int) -> int:
    deadline = time.monotonic() + 15
    while True:
        rows = developer.client.get("/usage", params={"group_by": "status"}).json()["usage"]  # type: ignore[attr-defined]
        if sum(r["requests"] for r in rows) >= expected_requests or time.monotonic() > deadline:
            return sum(r["total_tokens"] for r in rows)
        time.sleep(0.2)


def test_forty_concurrent_chats_never_pass_the_budget_in_memory(
    platform: Platform, make: Factory, fake: FakeOpenAI, models: dict[str, str]
) -> None:
    developer, _app, key = make.key_for(tokens_per_minute=200)
    burst = chat_burst([platform.url], key, models["echo"])
    assert_within_budget(burst, 200, fake.calls[models["echo-upstream"]], 30)
    # The usage records charge what the answers say, refused requests included as 429s.
    assert _usage_total(developer, 40) == burst.charged


def test_forty_concurrent_chats_never_pass_the_budget_in_redis(
    redis_server: tuple[str, str, str], fake: FakeOpenAI
) -> None:
    url, model, upstream = redis_server
    admin_auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=url, headers=admin_auth, timeout=60) as admin:
        make = Factory(url, admin)
        try:
            developer, _app, key = make.key_for(tokens_per_minute=200)
            burst = chat_burst([url], key, model)
            assert_within_budget(burst, 200, fake.calls[upstream], 30)
            assert _usage_total(developer, 40) == burst.charged
        finally:
            make.close()


def test_input_and_output_limits_refuse_on_their_own(
    platform: Platform, make: Factory, fake: FakeOpenAI, models: dict[str, str]
) -> None:
    model = models["echo"]
    # 30 prompt words, reserved as 37 (the chat template's overhead): one fits in 40.
    _dev, _app, key = make.key_for(input_tokens_per_minute=40)
    client = _client(platform.url, key)
    assert _chat(client, model).usage.prompt_tokens == 30  # type: ignore[attr-defined]
    with pytest.raises(openai.RateLimitError) as refused:
        _chat(client, model)
    assert "input_tokens_per_minute" in refused.value.message
    assert refused.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
    assert refused.value.body["type"] == "rate_limit_exceeded"  # type: ignore[index]

    _dev, _app, key = make.key_for(output_tokens_per_minute=10)
    client = _client(platform.url, key)
    calls = fake.calls[models["echo-upstream"]]
    first = _chat(client, model, max_tokens=8)
    assert first.usage.completion_tokens == 8  # type: ignore[attr-defined]
    second = _chat(client, model, max_tokens=8)  # 2 left: capped, not refused
    assert second.usage.completion_tokens == 2  # type: ignore[attr-defined]
    assert second.choices[0].finish_reason == "length"  # type: ignore[attr-defined]
    assert fake.requests[-1]["max_tokens"] == 2
    with pytest.raises(openai.RateLimitError) as refused:
        _chat(client, model, max_tokens=8)
    assert "output_tokens_per_minute" in refused.value.message
    assert fake.calls[models["echo-upstream"]] == calls + 2
    headers = refused.value.response.headers
    retry = int(headers["Retry-After"])
    assert 1 <= retry <= 60
    assert headers["X-RateLimit-Limit"] == "10" and headers["X-RateLimit-Remaining"] == "0"
    assert headers["RateLimit-Policy"] == (
        '"output_tokens_per_minute";q=10;w=60;openmaas-unit="tokens"'
    )
    assert headers["RateLimit"] == f'"output_tokens_per_minute";r=0;t={retry}'


def test_a_rule_applies_its_own_limits_and_prices(
    platform: Platform, make: Factory, models: dict[str, str]
) -> None:
    rule = {
        "models": ["tiny-*"],
        "name": "tiny models",
        "output_tokens_per_minute": 5,
        "price_per_1k_output_tokens": 20.0,
    }
    plan = make.plan(tokens_per_minute=10_000, price_per_1k_output_tokens=2.0, rules=[rule])
    shown = platform.admin.get(f"/plans/{plan}").json()
    # Prices come back exact, as decimal strings.
    assert shown["rules"] == [{**rule, "price_per_1k_output_tokens": "20"}]
    _dev, app_id, key = make.key_for(plan)
    client = _client(platform.url, key)
    tiny = _chat(client, models["tiny"])
    assert tiny.usage.completion_tokens == 5  # type: ignore[attr-defined]
    assert tiny.choices[0].finish_reason == "length"  # type: ignore[attr-defined]
    with pytest.raises(openai.RateLimitError) as refused:
        _chat(client, models["tiny"])
    assert "output_tokens_per_minute" in refused.value.message
    other = _chat(client, models["other"])  # the plan's own limits: not capped at 5
    assert other.usage.completion_tokens == 30  # type: ignore[attr-defined]
    deadline = time.monotonic() + 15
    while True:  # until the usage is flushed
        statement = platform.admin.get("/billing/statements", params={"user_id": _dev.user_id})
        applications = statement.json()["accounts"][0]["applications"]
        if applications and applications[0]["output_tokens"] >= 35:
            break
        assert time.monotonic() < deadline, applications
        time.sleep(0.2)
    [line] = applications
    assert line["application_id"] == app_id
    lines = statement.json()["accounts"][0]["lines"]
    by_model = {item["model"]: item for item in lines}
    assert by_model[models["tiny"]]["price_per_1k_output_tokens"] == "20"
    assert by_model[models["other"]]["price_per_1k_output_tokens"] == "2"
    # 5 tiny output tokens at 20 per 1k, 30 other ones at 2 per 1k, rounded per line.
    assert line["total"] == "0.16"


def test_a_stream_whose_upstream_ignores_the_cap_stops_at_the_reservation(
    platform: Platform, make: Factory, fake: FakeOpenAI, models: dict[str, str]
) -> None:
    developer, _app, key = make.key_for(output_tokens_per_minute=10)
    body = {
        "model": models["greedy"],
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": 30,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    events = []
    with (
        httpx.Client(base_url=platform.url, timeout=60) as http,
        http.stream(
            "POST", "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["x-ratelimit-limit-tokens"] == "10"
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert fake.requests[-1]["max_tokens"] == 10  # the cap went upstream, and was ignored
    assert events[-1] == "[DONE]"
    import json

    chunks = [json.loads(e) for e in events[:-1]]
    usage = chunks[-1]["usage"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1])
    assert text.split() == ["You", "said:", *PROMPT.split()[:8]]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert usage["completion_tokens"] == 10
    assert usage["total_tokens"] == usage["prompt_tokens"] + 10
    deadline = time.monotonic() + 15
    while True:
        rows = developer.client.get("/usage").json()["usage"]
        if rows or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert rows[0]["output_tokens"] == 10 and rows[0]["input_tokens"] == usage["prompt_tokens"]


def test_an_answer_past_its_cap_is_cut_and_charged_what_was_sent(
    platform: Platform, make: Factory, models: dict[str, str]
) -> None:
    _dev, _app, key = make.key_for(output_tokens_per_minute=10, requests_per_minute=100)
    raw = _client(platform.url, key).chat.completions.with_raw_response.create(
        model=models["greedy"], messages=[{"role": "user", "content": PROMPT}]
    )
    answer = raw.parse()
    assert answer.choices[0].message.content.split() == ["You", "said:", *PROMPT.split()[:8]]
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage.completion_tokens == 10
    headers = raw.headers
    assert headers["x-ratelimit-limit-requests"] == "100"
    assert headers["x-ratelimit-remaining-requests"] == "99"
    assert headers["x-ratelimit-limit-tokens"] == "10"
    assert headers["x-ratelimit-remaining-tokens"] == "0"
    assert headers["x-ratelimit-reset-tokens"].endswith("s")


def test_embeddings_reserve_their_input(
    platform: Platform, make: Factory, models: dict[str, str]
) -> None:
    _dev, _app, key = make.key_for(input_tokens_per_minute=10)
    client = _client(platform.url, key)
    for _ in range(3):
        assert (
            client.embeddings.create(model=models["echo"], input="a b c").usage.prompt_tokens == 3
        )
    with pytest.raises(openai.RateLimitError):
        client.embeddings.create(model=models["echo"], input="a b c")

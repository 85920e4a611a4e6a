"""Request limits over HTTP on the product's inference routes: in memory, and in Redis."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from openmaas.app import create_app
from openmaas.testing import FakeOpenAI
from tests.accounts import ROW, Factory, infer
from tests.conftest import ADMIN_KEY, Platform, make_settings
from tests.models import classifier
from tests.servers import drop_redis_prefix, redis_or_skip, running, unique_redis_prefix
from tests.serving.helpers import deploy, register, register_estimator


@pytest.fixture(scope="module")
def redis_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A server counting its limits in Redis (under a prefix of its own), with a model."""
    url = redis_or_skip()
    prefix = unique_redis_prefix()
    directory = tmp_path_factory.mktemp("redis")
    settings = make_settings(directory, redis_url=url, redis_prefix=prefix)
    try:
        with running(create_app(settings)) as server:
            with httpx.Client(
                base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
            ) as admin:
                register_estimator(admin, "clf", classifier(), directory)
                deploy(admin, "clf", endpoint_name="clf")
            yield server.url, "clf"
    finally:
        drop_redis_prefix(prefix)


def burst(
    urls: list[str],
    key: str,
    callers: int,
    model: str,
    path: str = "/predict",
    body: dict | None = None,
) -> list[httpx.Response]:
    """``callers`` requests at once (predictions by default), spread over the servers."""

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=callers, max_keepalive_connections=callers)
        clients = [httpx.AsyncClient(base_url=url, timeout=60, limits=limits) for url in urls]
        sent = body if body is not None else {"model_name": model, "input": ROW}
        try:
            headers = {"Authorization": f"Bearer {key}"}
            return await asyncio.gather(
                *(
                    clients[i % len(clients)].post(path, headers=headers, json=sent)
                    for i in range(callers)
                )
            )
        finally:
            for client in clients:
                await client.aclose()

    return asyncio.run(run())


def assert_exactly(responses: list[httpx.Response], admitted: int) -> None:
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: admitted, 429: len(responses) - admitted}, statuses
    refused = next(r for r in responses if r.status_code == 429)
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    error = refused.json()
    assert error.get("code", error.get("error", {}).get("code")) in (
        "rate_limited",
        "rate_limit_exceeded",
    )


def test_limit_admits_exactly_n_of_200_concurrent_in_memory(
    platform: Platform, make: Factory, classifiers: list[str]
) -> None:
    _developer, _app, key = make.key_for(requests_per_day=37)
    assert_exactly(burst([platform.url], key, 200, classifiers[0]), 37)


def test_limit_admits_exactly_n_of_200_concurrent_in_redis(
    redis_platform: tuple[str, str],
) -> None:
    url, model = redis_platform
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as admin:
        make = Factory(url, admin)
        try:
            _developer, _app, key = make.key_for(requests_per_hour=53)
            assert_exactly(burst([url], key, 200, model), 53)
        finally:
            make.close()


def test_rate_limit_headers(make: Factory, classifiers: list[str]) -> None:
    _developer, _app, key = make.key_for(requests_per_minute=3, requests_per_day=1000)
    client = make.client()
    remaining = []
    for _ in range(3):
        response = infer(client, key, classifiers[0])
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Limit"] == "3"
        assert 1 <= int(response.headers["X-RateLimit-Reset"]) <= 60
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
    assert remaining == [2, 1, 0]
    refused = infer(client, key, classifiers[0])
    assert refused.status_code == 429
    retry = int(refused.headers["Retry-After"])
    assert 1 <= retry <= 60
    assert refused.json()["details"]["limit"] == "requests_per_minute"
    assert refused.headers["RateLimit-Policy"] == '"requests_per_minute";q=3;w=60'
    assert refused.headers["RateLimit"] == f'"requests_per_minute";r=0;t={retry}'


def test_a_refusal_by_a_longer_window_spends_no_shorter_one(
    make: Factory, classifiers: list[str]
) -> None:
    """All windows or none: the day's refusals leave the minute's budget untouched."""
    _developer, _app, key = make.key_for(requests_per_minute=5, requests_per_day=2)
    client = make.client()
    statuses = [infer(client, key, classifiers[0]).status_code for _ in range(4)]
    assert statuses == [200, 200, 429, 429]
    refused = infer(client, key, classifiers[0])
    assert refused.json()["details"]["limit"] == "requests_per_day"


def test_admins_are_not_limited(platform: Platform, classifiers: list[str]) -> None:
    responses = burst([platform.url], ADMIN_KEY, 30, classifiers[0])
    assert {r.status_code for r in responses} == {200}


def test_metadata_and_readiness_spend_no_request_limit(
    platform: Platform, make: Factory, classifiers: list[str]
) -> None:
    model = classifiers[0]
    _developer, _app, key = make.key_for(models=[model], requests_per_day=1)
    client = make.client(Authorization=f"Bearer {key}")
    for _ in range(3):
        assert client.get(f"/v2/models/{model}").status_code == 200
        assert client.get(f"/v2/models/{model}/ready").status_code == 200
        assert client.get("/v1/models").status_code == 200
    assert make.client().get(f"/v2/models/{model}").status_code == 401
    assert infer(client, key, model).status_code == 200
    assert infer(client, key, model).status_code == 429


def test_in_memory_monthly_quota_survives_a_restart(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    directory = tmp_path_factory.mktemp("quota")
    settings = make_settings(directory)
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with FakeOpenAI() as fake:
        endpoint = Path(directory) / "echo.openai.json"
        endpoint.write_text(json.dumps({"base_url": fake.url, "model": "echo"}))
        body = {"model": "echo", "messages": [{"role": "user", "content": "one two three"}]}
        with (
            running(create_app(settings)) as server,
            httpx.Client(base_url=server.url, headers=headers) as admin,
        ):
            register(admin, "echo", endpoint)
            deploy(admin, "echo", endpoint_name="echo")
            make = Factory(server.url, admin)
            _developer, _app, key = make.key_for(monthly_token_quota=20)
            answer = make.client().post(
                "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
            )
            assert answer.status_code == 200, answer.text
            make.close()
        # The usage flushed at shutdown seeds the month's counter of the next start.
        with running(create_app(settings)) as server, httpx.Client(base_url=server.url) as c:
            response = c.post(
                "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
            )
            assert response.status_code == 429, response.text
            assert response.json()["error"]["code"] == "insufficient_quota"

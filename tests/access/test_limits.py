"""Rate limits and token quotas over HTTP: in memory, and in Redis shared by workers."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests.accounts import Factory, infer
from tests.conftest import ADMIN_KEY, Platform, make_settings
from tests.gated import create_gated_app
from tests.servers import drop_redis_prefix, redis_or_skip, running, unique_redis_prefix


@pytest.fixture(scope="module")
def redis_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server counting its limits in Redis (under a prefix of its own)."""
    url = redis_or_skip()
    prefix = unique_redis_prefix()
    settings = make_settings(tmp_path_factory.mktemp("redis"), redis_url=url, redis_prefix=prefix)
    try:
        with running(create_gated_app(settings)) as server:
            yield server.url
    finally:
        drop_redis_prefix(prefix)


def burst(urls: list[str], key: str, callers: int, **body: object) -> list[httpx.Response]:
    """``callers`` requests at once, spread over the given servers."""

    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=callers, max_keepalive_connections=callers)
        clients = [httpx.AsyncClient(base_url=url, timeout=60, limits=limits) for url in urls]
        try:
            headers = {"Authorization": f"Bearer {key}"}
            return await asyncio.gather(
                *(
                    clients[i % len(clients)].post("/test-infer/m", headers=headers, json=body)
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
    assert refused.json()["code"] == "rate_limited"


def test_limit_admits_exactly_n_of_200_concurrent_in_memory(
    platform: Platform, make: Factory
) -> None:
    _developer, _app, key = make.key_for(requests_per_day=37)
    assert_exactly(burst([platform.url], key, 200), 37)


def test_limit_admits_exactly_n_of_200_concurrent_in_redis(
    redis_platform: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with httpx.Client(
        base_url=redis_platform, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
    ) as admin:
        make = Factory(redis_platform, admin)
        try:
            _developer, _app, key = make.key_for(requests_per_hour=53)
            assert_exactly(burst([redis_platform], key, 200), 53)
        finally:
            make.close()


def test_rate_limit_headers(make: Factory) -> None:
    _developer, _app, key = make.key_for(requests_per_minute=3, requests_per_day=1000)
    client = make.client()
    remaining = []
    for _ in range(3):
        response = infer(client, key)
        assert response.status_code == 200
        assert response.headers["X-RateLimit-Limit"] == "3"
        assert 1 <= int(response.headers["X-RateLimit-Reset"]) <= 60
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
    assert remaining == [2, 1, 0]
    refused = infer(client, key)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.json()["details"]["limit"] == "requests_per_minute"


@pytest.mark.parametrize("limit", ["tokens_per_minute", "tokens_per_day", "monthly_token_quota"])
def test_token_limits_are_charged_with_real_counts(make: Factory, limit: str) -> None:
    _developer, _app, key = make.key_for(**{limit: 100})
    client = make.client()
    assert infer(client, key, input_tokens=30, output_tokens=30).status_code == 200
    # 60 spent, 40 left: admitted, and its 60 tokens count in full.
    assert infer(client, key, input_tokens=10, output_tokens=50).status_code == 200
    refused = infer(client, key)
    assert refused.status_code == 429, refused.text
    assert refused.json()["details"]["limit"] == limit
    assert "Retry-After" in refused.headers


def test_admins_are_not_limited(platform: Platform, make: Factory) -> None:
    responses = burst([platform.url], ADMIN_KEY, 30)
    assert {r.status_code for r in responses} == {200}


def test_in_memory_monthly_quota_survives_a_restart(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    settings = make_settings(tmp_path_factory.mktemp("quota"))
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with (
        running(create_gated_app(settings)) as server,
        httpx.Client(base_url=server.url, headers=headers) as admin,
    ):
        make = Factory(server.url, admin)
        _developer, _app, key = make.key_for(monthly_token_quota=100)
        assert infer(make.client(), key, output_tokens=150).status_code == 200
        make.close()
    # The usage flushed at shutdown seeds the month's counter of the next start.
    with running(create_gated_app(settings)) as server, httpx.Client(base_url=server.url) as c:
        response = infer(c, key)
        assert response.status_code == 429
        assert response.json()["details"]["limit"] == "monthly_token_quota"

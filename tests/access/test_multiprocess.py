"""Real server processes sharing Redis: two replicas on PostgreSQL, and ``--workers 2``."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from openmaas.testing import FakeOpenAI
from tests.access.budgets import PROMPT, assert_within_budget, chat_burst, remote_model, unique
from tests.access.test_limits import assert_exactly, burst
from tests.accounts import PASSWORD, Factory, await_key_everywhere, infer
from tests.conftest import ADMIN_KEY
from tests.servers import (
    drop_redis_prefix,
    free_port,
    postgres_database,
    redis_or_skip,
    unique_redis_prefix,
    wait_ready,
)

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
CHAT_PROBE = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 1}

ROOT = Path(__file__).resolve().parents[2]


def _start(env: dict[str, str], port: int) -> subprocess.Popen[str]:
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "openmaas.app:create_app_from_environment",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def two_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[str], str, list]]:
    redis_url = redis_or_skip()
    prefix = unique_redis_prefix()
    # Replicas share the database and, like a shared volume, the artifact store.
    data_dir = tmp_path_factory.mktemp("replicas")
    with postgres_database() as database_url:
        base = {k: v for k, v in os.environ.items() if not k.startswith("OPENMAAS_")}
        processes = []
        urls = []
        session_secret = secrets.token_hex(24)
        try:
            for _ in range(2):
                port = free_port()
                env = {
                    **base,
                    "OPENMAAS_DATABASE_URL": database_url,
                    "OPENMAAS_DATA_DIR": str(data_dir),
                    "OPENMAAS_REDIS_URL": redis_url,
                    "OPENMAAS_REDIS_PREFIX": prefix,
                    "OPENMAAS_ADMIN_KEY": ADMIN_KEY,
                    "OPENMAAS_SESSION_SECRET": session_secret,
                    "OPENMAAS_ACCESS_REFRESH_SECONDS": "0.5",
                    # Only the final flush at shutdown writes usage: that is what is tested.
                    "OPENMAAS_USAGE_FLUSH_SECONDS": "3600",
                    "OPENMAAS_LOG_LEVEL": "warning",
                }
                processes.append(_start(env, port))
                urls.append(f"http://127.0.0.1:{port}")
            for process, url in zip(processes, urls, strict=True):
                wait_ready(process, url)
            yield urls, database_url, processes
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait(timeout=30)
            drop_redis_prefix(prefix)


async def _usage_total(database_url: str, *, exclude_admin: bool = False) -> int:
    import asyncpg

    query = "SELECT COALESCE(SUM(requests), 0) FROM usage"
    if exclude_admin:
        query += " WHERE application_id IS NOT NULL"
    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        return int(await connection.fetchval(query))
    finally:
        await connection.close()


def _await_known(client: httpx.Client, key: str) -> float:
    """Poll until this server knows the key (403 for a model outside the plan, not 401)."""
    started = time.monotonic()
    while True:
        response = infer(client, key, "not-in-plan")
        if response.status_code == 403:
            return time.monotonic() - started
        assert response.status_code == 401, response.text
        assert time.monotonic() - started < 2, "a new key took over 2 s to reach a replica"
        time.sleep(0.05)


def _await_served(urls: list[str], model: str, body: dict, path: str = "/predict") -> None:
    """Until every server (each worker: a new connection each time) serves the model."""
    deadline = time.monotonic() + 30
    served = 0
    while served < 20:
        for url in urls:
            response = httpx.post(f"{url}{path}", json=body, headers=ADMIN, timeout=60)
            if response.status_code == 404:  # not synced yet
                served = 0
                assert time.monotonic() < deadline, "the model never reached every server"
                time.sleep(0.1)
                continue
            assert response.status_code == 200, response.text
            served += 1


def _deploy_chat(admin: httpx.Client, fake: FakeOpenAI, directory: Path) -> tuple[str, str]:
    """A remote model (the fake upstream): cheap to load on a busy machine."""
    upstream = unique("echo")
    return remote_model(admin, unique("chat"), fake.url, upstream, directory), upstream


def _embed(client: httpx.Client, key: str, model: str) -> httpx.Response:
    body = {"model": model, "input": "a"}
    return client.post("/v1/embeddings", json=body, headers={"Authorization": f"Bearer {key}"})


def _token_burst(
    urls: list[str], make: Factory, fake: FakeOpenAI, chat: str, upstream: str
) -> None:
    _await_served(urls, chat, CHAT_PROBE | {"model": chat}, "/v1/chat/completions")
    calls = fake.calls[upstream]
    _developer, _app, key = make.key_for(tokens_per_minute=200)
    await_key_everywhere(urls, key)
    burst = chat_burst(urls, key, chat)
    assert_within_budget(burst, 200, fake.calls[upstream] - calls, 30)


def test_replicas_share_limits_see_revocations_and_lose_no_usage(
    two_servers, fake: FakeOpenAI, tmp_path: Path
) -> None:
    urls, database_url, processes = two_servers
    metered = 0  # requests to the inference routes that are metered: all but 401s
    with (
        httpx.Client(base_url=urls[0], headers=ADMIN, timeout=60) as admin,
        httpx.Client(base_url=urls[0], timeout=30) as on_a,
        httpx.Client(base_url=urls[1], timeout=30) as on_b,
    ):
        model, upstream = _deploy_chat(admin, fake, tmp_path)
        make = Factory(urls[0], admin)
        try:
            _token_burst(urls, make, fake, model, upstream)
            metered += 40

            plan = make.plan(models=[model], requests_per_day=41)
            _dev, _app, key = make.key_for(plan)
            _await_known(on_b, key)
            metered += 1
            body = {"model": model, "input": "a"}
            responses = burst(urls, key, 200, model, "/v1/embeddings", body)
            metered += len(responses)
            assert_exactly(responses, 41)

            developer, app_id, key = make.key_for(make.plan(models=[model]))
            _await_known(on_b, key)
            metered += 1
            for client in (on_a, on_b):
                assert _embed(client, key, model).status_code == 200
                metered += 1
            key_id = developer.client.get(f"/applications/{app_id}/keys").json()["keys"][0]["id"]
            assert (
                developer.client.delete(f"/applications/{app_id}/keys/{key_id}").status_code == 200
            )
            revoked_at = time.monotonic()
            assert _embed(on_a, key, model).status_code == 401
            while (response := _embed(on_b, key, model)).status_code != 401:
                metered += 1
                assert response.status_code == 200
                assert time.monotonic() - revoked_at < 2, "revocation took over 2 s"
                time.sleep(0.05)
            # Sessions made on one replica are honoured by the other.
            assert developer.client.get("/me").status_code == 200
            login = httpx.post(
                f"{urls[1]}/auth/login",
                json={"username": developer.username, "password": PASSWORD},
            )
            assert httpx.get(f"{urls[0]}/me", cookies=login.cookies).status_code == 200
        finally:
            make.close()
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        output, _ = process.communicate(timeout=60)
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert process.returncode in (0, -signal.SIGTERM), output
    # The admin's probes of _await_served are metered too (the admin key is an account).
    assert asyncio.run(_usage_total(database_url, exclude_admin=True)) == metered


def test_workers_share_token_budgets_in_redis(fake: FakeOpenAI, tmp_path: Path) -> None:
    """``openmaas serve --workers 2`` with Redis: one budget for both workers."""
    redis_url = redis_or_skip()
    prefix = unique_redis_prefix()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENMAAS_", "PROMETHEUS_"))}
    env.update(
        OPENMAAS_ADMIN_KEY=ADMIN_KEY,
        OPENMAAS_REDIS_URL=redis_url,
        OPENMAAS_REDIS_PREFIX=prefix,
        OPENMAAS_LOG_LEVEL="warning",
    )
    command = [sys.executable, "-m", "openmaas.cli", "serve", "--no-demo", "--workers", "2"]
    command += ["--port", str(port), "--data-dir", str(tmp_path / "data")]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(process, url, timeout=180)  # two workers start on a busy machine
        with httpx.Client(base_url=url, headers=ADMIN, timeout=60) as admin:
            chat, upstream = _deploy_chat(admin, fake, tmp_path)
            make = Factory(url, admin)
            try:
                _token_burst([url], make, fake, chat, upstream)
            finally:
                make.close()
    finally:
        process.terminate()
        process.communicate(timeout=30)
        drop_redis_prefix(prefix)

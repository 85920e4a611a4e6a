"""Two real server processes sharing PostgreSQL and Redis, as replicas would."""

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

from tests.access.test_limits import assert_exactly, burst
from tests.accounts import PASSWORD, Factory, infer
from tests.conftest import ADMIN_KEY
from tests.servers import (
    drop_redis_prefix,
    free_port,
    postgres_database,
    redis_or_skip,
    unique_redis_prefix,
    wait_ready,
)

ROOT = Path(__file__).resolve().parents[2]


def _start(env: dict[str, str], port: int) -> subprocess.Popen[str]:
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "tests.gated:create_gated_app_from_environment",
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
def two_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[str], str, list]]:
    redis_url = redis_or_skip()
    prefix = unique_redis_prefix()
    with postgres_database() as database_url:
        base = {k: v for k, v in os.environ.items() if not k.startswith("OPENMAAS_")}
        processes = []
        urls = []
        session_secret = secrets.token_hex(24)
        try:
            for name in ("a", "b"):
                port = free_port()
                env = {
                    **base,
                    "OPENMAAS_DATABASE_URL": database_url,
                    "OPENMAAS_DATA_DIR": str(tmp_path_factory.mktemp(f"replica-{name}")),
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


async def _usage_total(database_url: str) -> int:
    import asyncpg

    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        return int(await connection.fetchval("SELECT COALESCE(SUM(requests), 0) FROM usage"))
    finally:
        await connection.close()


def _await_known(client: httpx.Client, key: str, sent: list[int]) -> float:
    """Poll until this server knows the key (403 for a model outside the plan, not 401)."""
    started = time.monotonic()
    while True:
        response = infer(client, key, "not-in-plan")
        sent[0] += 1
        if response.status_code == 403:
            return time.monotonic() - started
        assert response.status_code == 401, response.text
        assert time.monotonic() - started < 2, "a new key took over 2 s to reach a replica"
        time.sleep(0.05)


def test_replicas_share_limits_see_revocations_and_lose_no_usage(two_servers) -> None:
    urls, database_url, processes = two_servers
    sent = [0]  # every request to the inference route, on either server
    with (
        httpx.Client(base_url=urls[0], headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as admin,
        httpx.Client(base_url=urls[0], timeout=30) as on_a,
        httpx.Client(base_url=urls[1], timeout=30) as on_b,
    ):
        make = Factory(urls[0], admin)
        try:
            plan = make.plan(models=["m"], requests_per_day=41)
            _dev, _app, key = make.key_for(plan)
            _await_known(on_b, key, sent)
            responses = burst(urls, key, 200)
            sent[0] += len(responses)
            assert_exactly(responses, 41)

            developer, app_id, key = make.key_for(make.plan(models=["m"]))
            _await_known(on_b, key, sent)
            for client in (on_a, on_b):
                assert infer(client, key, "m").status_code == 200
                sent[0] += 1
            key_id = developer.client.get(f"/applications/{app_id}/keys").json()["keys"][0]["id"]
            assert (
                developer.client.delete(f"/applications/{app_id}/keys/{key_id}").status_code == 200
            )
            revoked_at = time.monotonic()
            assert infer(on_a, key, "m").status_code == 401
            sent[0] += 1
            while infer(on_b, key, "m").status_code != 401:
                sent[0] += 1
                assert time.monotonic() - revoked_at < 2, "revocation took over 2 s"
                time.sleep(0.05)
            sent[0] += 1
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
    assert asyncio.run(_usage_total(database_url)) == sent[0]

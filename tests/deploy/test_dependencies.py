"""PostgreSQL and Redis going away under a running server, through proxies the test cuts.

Management routes answer 503 with Retry-After within a bounded time, inference keeps
answering from memory on the same keep-alive connection, readiness turns 503 (database)
or degraded (Redis) and back, and start-up failures are said in one line.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from openmaas.app import create_app
from tests.accounts import Factory
from tests.conftest import ADMIN_KEY, make_settings
from tests.models import classifier
from tests.proxy import TcpProxy
from tests.servers import (
    REDIS_URL,
    ServerThread,
    drop_redis_prefix,
    free_port,
    postgres_database,
    redis_or_skip,
    unique_redis_prefix,
)
from tests.serving.helpers import deploy, register_estimator

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ROW = {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]}


def through(proxy: TcpProxy, url: str) -> str:
    """``url`` with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return url.replace(parts.netloc, f"{user}127.0.0.1:{proxy.port}", 1)


@dataclass
class Guarded:
    url: str
    database: TcpProxy
    redis: TcpProxy
    admin: httpx.Client
    model: str
    limited_key: str  # on a plan with a request limit: counted in Redis
    server: ServerThread


def _wait_ready(client: httpx.Client, timeout: float = 30) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = client.get("/readyz")
        if response.status_code == 200:
            return response
        assert time.monotonic() < deadline, response.text
        time.sleep(0.1)


def _start(settings_dir: Path, database_url: str, redis_url: str, prefix: str, **extra: object):
    settings = make_settings(
        settings_dir,
        database_url,
        redis_url=redis_url,
        redis_prefix=prefix,
        database_connect_timeout_seconds=1.0,
        database_statement_timeout_seconds=2.0,
        access_refresh_seconds=0.5,
        **extra,
    )
    server = ServerThread(create_app(settings))
    server.start()
    return server


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    redis_or_skip()
    prefix = unique_redis_prefix()
    redis_port = urlsplit(REDIS_URL).port or 6379
    with (
        postgres_database() as database_url,
        TcpProxy("127.0.0.1", urlsplit(database_url).port or 5432) as database,
        TcpProxy(urlsplit(REDIS_URL).hostname or "127.0.0.1", redis_port) as redis,
    ):
        redis_url = through(redis, REDIS_URL)
        server = _start(
            tmp_path_factory.mktemp("guarded"), through(database, database_url), redis_url, prefix
        )
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        try:
            with httpx.Client(base_url=server.url, headers=headers, timeout=60) as admin:
                model = "guarded_classifier"
                register_estimator(admin, model, classifier(), tmp_path_factory.mktemp("m"))
                deploy(admin, model, endpoint_name=model)
                make = Factory(server.url, admin)
                _dev, _app, key = make.key_for(models=[model], requests_per_minute=10_000)
                yield Guarded(server.url, database, redis, admin, model, key, server)
                make.close()
        finally:
            server.stop()
            drop_redis_prefix(prefix)


def _local_port(response: httpx.Response) -> int:
    stream = response.extensions["network_stream"]
    return int(stream.get_extra_info("client_addr")[1])


def test_database_down_management_503_inference_answers_readiness_follows(
    guarded: Guarded, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="openmaas")
    with httpx.Client(base_url=guarded.url, timeout=30) as probe:
        assert _wait_ready(probe).json()["status"] == "ready"
    key = {"Authorization": f"Bearer {guarded.limited_key}"}
    with httpx.Client(base_url=guarded.url, headers=key, timeout=30) as caller:
        first = caller.post(f"/v2/models/{guarded.model}/infer", json=ROW)
        assert first.status_code == 200, first.text
        port = _local_port(first)
        guarded.database.down()
        try:
            started = time.monotonic()
            listing = guarded.admin.get("/models")
            assert listing.status_code == 503, listing.text
            assert time.monotonic() - started < 8
            assert listing.json()["code"] == "database_unavailable"
            assert int(listing.headers["Retry-After"]) > 0
            # The portal's pages and the admin routes fail the same way, never with a 500.
            assert guarded.admin.get("/plans").status_code == 503
            for _ in range(5):
                answer = caller.post(f"/v2/models/{guarded.model}/infer", json=ROW)
                assert answer.status_code == 200, answer.text
                assert _local_port(answer) == port  # the keep-alive connection stayed open
                body = {"model_name": guarded.model, "input": [[1, 2, 3]]}
                assert caller.post("/predict", json=body).status_code == 200
            with httpx.Client(base_url=guarded.url, timeout=30) as probe:
                started = time.monotonic()
                for path in ("/readyz", "/health/ready", "/v2/health/ready"):
                    ready = probe.get(path)
                    assert ready.status_code == 503, ready.text
                assert time.monotonic() - started < 10
                assert (
                    probe.get("/readyz")
                    .json()["checks"]["database"]
                    .startswith("the database is unreachable")
                )
                assert probe.get("/v2/health/ready").json()["ready"] is False
                for path in ("/healthz", "/health/live", "/v2/health/live"):
                    assert probe.get(path).status_code == 200
            # The background jobs tick every 0.5-1 s; each logs the outage once.
            time.sleep(2.5)
            outage = [r for r in caplog.records if "unreachable" in r.getMessage()]
            jobs = {r.getMessage().split(":")[0] for r in outage}
            assert len(outage) == len(jobs), [r.getMessage() for r in outage]
            assert not any(r.exc_info for r in outage)
        finally:
            guarded.database.up()
        with httpx.Client(base_url=guarded.url, timeout=30) as probe:
            assert _wait_ready(probe).json()["checks"]["database"] == "ok"
        assert guarded.admin.get("/models").status_code == 200
        assert caller.post(f"/v2/models/{guarded.model}/infer", json=ROW).status_code == 200


def test_database_hanging_gets_503_in_bounded_time(guarded: Guarded) -> None:
    key = {"Authorization": f"Bearer {guarded.limited_key}"}
    with (
        httpx.Client(base_url=guarded.url, headers=key, timeout=30) as caller,
        httpx.Client(base_url=guarded.url, timeout=30) as probe,
    ):
        _wait_ready(probe)
        guarded.database.hang()
        try:
            started = time.monotonic()
            listing = guarded.admin.get("/models")
            elapsed = time.monotonic() - started
            assert listing.status_code == 503, listing.text
            assert listing.json()["code"] == "database_unavailable"
            # Connect (1 s) plus statement (2 s) timeouts, and the pool's pre-ping.
            assert elapsed < 10, elapsed
            assert probe.get("/readyz").status_code == 503
            answer = caller.post(f"/v2/models/{guarded.model}/infer", json=ROW)
            assert answer.status_code == 200, answer.text
        finally:
            guarded.database.up()
        _wait_ready(probe)
        assert guarded.admin.get("/models").status_code == 200


def test_redis_down_fails_closed_logs_once_and_reports_degraded(
    guarded: Guarded, caplog: pytest.LogCaptureFixture
) -> None:
    key = {"Authorization": f"Bearer {guarded.limited_key}"}
    with (
        httpx.Client(base_url=guarded.url, headers=key, timeout=30) as caller,
        httpx.Client(base_url=guarded.url, timeout=30) as probe,
    ):
        _wait_ready(probe)
        caplog.set_level(logging.WARNING, logger="openmaas.access")
        guarded.redis.down()
        try:
            for _ in range(4):
                refused = caller.post(f"/v2/models/{guarded.model}/infer", json=ROW)
                assert refused.status_code == 503, refused.text
                assert "rate limit store" in refused.json()["error"]
            ready = probe.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["status"] == "degraded"
            assert ready.json()["checks"]["rate_limits"].startswith("unreachable")
            # Admins are not limited: they still get answers.
            answer = guarded.admin.post(f"/v2/models/{guarded.model}/infer", json=ROW)
            assert answer.status_code == 200
        finally:
            guarded.redis.up()
        outage = [r for r in caplog.records if "rate limit store is unreachable" in r.message]
        assert len(outage) == 1, [r.message for r in outage]
        deadline = time.monotonic() + 15
        while caller.post(f"/v2/models/{guarded.model}/infer", json=ROW).status_code != 200:
            assert time.monotonic() < deadline, "limits did not come back with Redis"
            time.sleep(0.2)
        assert probe.get("/readyz").json()["status"] == "ready"
        assert any("answers again" in r.message for r in caplog.records)


def test_redis_down_fails_open_when_configured(
    guarded: Guarded, tmp_path_factory: pytest.TempPathFactory
) -> None:
    prefix = unique_redis_prefix()
    with postgres_database() as database_url:
        server = _start(
            tmp_path_factory.mktemp("open"),
            database_url,
            through(guarded.redis, REDIS_URL),
            prefix,
            limits_fail_open=True,
        )
        try:
            headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
            with httpx.Client(base_url=server.url, headers=headers, timeout=60) as admin:
                model = "open_classifier"
                register_estimator(admin, model, classifier(), tmp_path_factory.mktemp("m"))
                deploy(admin, model, endpoint_name=model)
                make = Factory(server.url, admin)
                _dev, _app, key = make.key_for(models=[model], requests_per_minute=10_000)
                with httpx.Client(
                    base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30
                ) as caller:
                    assert caller.post(f"/v2/models/{model}/infer", json=ROW).status_code == 200
                    guarded.redis.down()
                    try:
                        for _ in range(3):
                            answer = caller.post(f"/v2/models/{model}/infer", json=ROW)
                            assert answer.status_code == 200, answer.text
                        ready = admin.get("/readyz").json()
                        assert ready["status"] == "degraded"
                        assert "admitting uncounted" in ready["checks"]["rate_limits"]
                    finally:
                        guarded.redis.up()
                make.close()
        finally:
            server.stop()
            drop_redis_prefix(prefix)


def _environment(**values: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("OPENMAAS_")}
    return {**base, **{f"OPENMAAS_{k.upper()}": v for k, v in values.items()}}


@pytest.mark.parametrize("entry", ["openmaas serve", "uvicorn factory"])
def test_unreachable_database_at_startup_is_one_clear_line(entry: str, tmp_path: Path) -> None:
    closed = free_port()
    env = _environment(
        database_url=f"postgresql+asyncpg://postgres:secret@127.0.0.1:{closed}/none",
        data_dir=str(tmp_path),
        startup_wait_seconds="0",
        log_level="info",
    )
    if entry == "openmaas serve":
        command = [sys.executable, "-m", "openmaas.cli", "serve", "--port", str(free_port())]
    else:
        command = [sys.executable, "-m", "uvicorn", "--factory"]
        command += ["openmaas.app:create_app_from_environment", "--port", str(free_port())]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if "cannot reach the database" in line]
    assert len(lines) == 1, output
    assert f"127.0.0.1:{closed}/none" in lines[0] and "secret" not in output


async def _statement(database_url: str, statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def test_a_replica_that_does_not_migrate_waits_for_the_schema(tmp_path: Path) -> None:
    """As on Kubernetes: replicas start with migrate_on_start off while a Job migrates."""
    import asyncio

    from openmaas.store.database import head_revisions

    with postgres_database() as database_url:
        port = free_port()
        env = _environment(
            database_url=database_url,
            data_dir=str(tmp_path / "replica"),
            migrate_on_start="false",
            startup_wait_seconds="120",
            admin_key=ADMIN_KEY,
            log_level="warning",
        )
        command = [sys.executable, "-m", "openmaas.cli", "serve", "--port", str(port)]
        replica = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        url = f"http://127.0.0.1:{port}"
        try:
            time.sleep(3)
            with pytest.raises(httpx.TransportError):
                httpx.get(f"{url}/readyz")  # not serving: the schema is not there yet
            assert replica.poll() is None
            job = _environment(database_url=database_url, data_dir=str(tmp_path / "job"))
            upgrade = [sys.executable, "-m", "openmaas.cli", "db", "upgrade"]
            done = subprocess.run(upgrade, env=job, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stdout + done.stderr
            with httpx.Client(base_url=url, timeout=30) as probe:
                deadline = time.monotonic() + 120
                while True:
                    assert replica.poll() is None, replica.stdout.read() if replica.stdout else ""
                    try:
                        if probe.get("/readyz").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert time.monotonic() < deadline, "the replica never became ready"
                    time.sleep(0.2)
                # A schema behind the code (a rollback, a half-done upgrade) is not ready.
                (head,) = head_revisions()
                behind = "UPDATE alembic_version SET version_num = '0001'"
                asyncio.run(_statement(database_url, behind))
                ready = probe.get("/readyz")
                assert ready.status_code == 503
                assert "schema" in ready.json()["checks"]["database"]
                asyncio.run(
                    _statement(database_url, f"UPDATE alembic_version SET version_num = '{head}'")
                )
                assert probe.get("/readyz").status_code == 200
        finally:
            replica.terminate()
            replica.communicate(timeout=60)


GATED_MODEL = """
import os
import time

import numpy as np


class Gated:
    signature = {{
        "inputs": [{{"name": "x", "datatype": "FP64", "shape": [-1, 1]}}],
        "outputs": [{{"name": "y", "datatype": "FP64", "shape": [-1]}}],
    }}

    def load(self):
        deadline = time.monotonic() + 60
        while not os.path.exists({gate!r}) and time.monotonic() < deadline:
            time.sleep(0.05)

    def predict(self, x):
        return np.asarray(x, dtype=float).reshape(len(x))
"""


def test_readiness_waits_for_the_deployments_loaded_at_start(tmp_path: Path) -> None:
    from tests.servers import running
    from tests.serving.helpers import register

    gate = tmp_path / "gate"
    gate.touch()
    source = tmp_path / "gated.py"
    source.write_text(GATED_MODEL.format(gate=str(gate)))
    settings = make_settings(tmp_path / "data")
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with (
        running(create_app(settings)) as server,
        httpx.Client(base_url=server.url, headers=headers, timeout=30) as client,
    ):
        register(client, "gated", source, allow_code="true")
        deploy(client, "gated", endpoint_name="gated")
    gate.unlink()  # the next start's load waits for it
    with (
        running(create_app(settings)) as server,
        httpx.Client(base_url=server.url, headers=headers, timeout=30) as client,
    ):
        for path in ("/readyz", "/v2/health/ready"):
            waiting = client.get(path)
            assert waiting.status_code == 503, waiting.text
        checks = client.get("/readyz").json()["checks"]
        assert checks["models"].startswith("loading 1"), checks
        assert checks["database"] == "ok" and checks["lifecycle"] == "running"
        assert client.get("/healthz").status_code == 200
        state = client.get("/v2/models/gated/ready")
        assert state.status_code == 503 and "loading" in state.json()["error"]
        gate.touch()
        ready = _wait_ready(client)
        assert ready.json()["checks"]["models"] == "ok"
        assert client.get("/v2/models/gated/ready").json()["state"] == "loaded"

"""Usage recorded while PostgreSQL is away: bounded in memory, spilled to a file, written
when the database answers again; past the spill budget dropped and counted."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from openmaas.app import create_app
from tests.accounts import Factory
from tests.conftest import ADMIN_KEY, make_settings
from tests.deploy.test_dependencies import through
from tests.models import classifier
from tests.proxy import TcpProxy
from tests.servers import ServerThread, postgres_database
from tests.serving.helpers import deploy, register_estimator

pytestmark = [pytest.mark.postgres]

ROW = {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]}


@dataclass
class Outage:
    url: str
    data_dir: Path
    database: TcpProxy
    admin: httpx.Client
    caller: httpx.Client  # an application's key, on a plan without limits
    model: str


@contextmanager
def _platform(tmp_path: Path, **settings: object) -> Iterator[Outage]:
    with (
        postgres_database() as database_url,
        TcpProxy("127.0.0.1", urlsplit(database_url).port or 5432) as database,
    ):
        config = make_settings(
            tmp_path / "data",
            through(database, database_url),
            database_connect_timeout_seconds=1.0,
            database_statement_timeout_seconds=2.0,
            usage_flush_seconds=0.3,
            **settings,
        )
        server = ServerThread(create_app(config))
        server.start()
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        try:
            with httpx.Client(base_url=server.url, headers=headers, timeout=60) as admin:
                model = "metered_classifier"
                register_estimator(admin, model, classifier(), tmp_path)
                deploy(admin, model, endpoint_name=model)
                make = Factory(server.url, admin)
                _dev, _app, key = make.key_for(models=[model])
                auth = {"Authorization": f"Bearer {key}"}
                with httpx.Client(base_url=server.url, headers=auth, timeout=60) as caller:
                    yield Outage(server.url, tmp_path / "data", database, admin, caller, model)
                make.close()
        finally:
            server.stop()


def _call_both_protocols(outage: Outage, times: int) -> None:
    """Two usage buckets (one per protocol) of ``times`` requests each."""
    for _ in range(times):
        assert outage.caller.post(f"/v2/models/{outage.model}/infer", json=ROW).status_code == 200
        body = {"model_name": outage.model, "input": [[1, 2, 3]]}
        assert outage.caller.post("/predict", json=body).status_code == 200


def _spilled(outage: Outage) -> list[Path]:
    spill = outage.data_dir / "usage-spill"
    return sorted(spill.glob("*.jsonl")) if spill.is_dir() else []


def _metered(outage: Outage) -> int:
    rows = outage.admin.get("/usage", params={"model": outage.model}).json()["usage"]
    return sum(int(row["requests"]) for row in rows)


def _dropped(outage: Outage) -> float:
    text = outage.admin.get("/metrics").text
    found = re.search(r"^openmaas_usage_dropped_requests_total ([0-9.e+]+)$", text, re.M)
    assert found, "the dropped-usage counter is not exported"
    return float(found.group(1))


def _wait(condition: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_usage_past_the_memory_bound_is_spilled_and_written_later(tmp_path: Path) -> None:
    with _platform(tmp_path, usage_memory_buckets=1) as outage:
        _call_both_protocols(outage, 2)
        _wait(lambda: _metered(outage) == 4, "usage before the outage was not written")
        outage.database.down()
        try:
            _call_both_protocols(outage, 5)  # two buckets: over the bound of one
            _wait(lambda: _spilled(outage), "the buckets were not spilled to a file")
            files = _spilled(outage)
            rows = [json.loads(line) for path in files for line in path.read_text().splitlines()]
            assert {row["model"] for row in rows} == {outage.model}
            assert 0 < sum(row["requests"] for row in rows) <= 10
            _call_both_protocols(outage, 1)  # memory starts again from nothing
        finally:
            outage.database.up()
        _wait(lambda: not _spilled(outage), "the spilled usage was not written back")
        _wait(lambda: _metered(outage) == 4 + 10 + 2, "not every request was metered")
        assert _dropped(outage) == 0


def test_usage_past_the_spill_budget_is_dropped_and_counted(tmp_path: Path) -> None:
    with _platform(tmp_path, usage_memory_buckets=1, usage_spill_bytes=0) as outage:
        _wait(lambda: _dropped(outage) == 0, "the counter starts at zero")
        outage.database.down()
        try:
            _call_both_protocols(outage, 3)
            _wait(lambda: _dropped(outage) == 6, "the lost requests were not counted")
            assert not _spilled(outage)
        finally:
            outage.database.up()
        # The platform goes on: new usage is written as before.
        _call_both_protocols(outage, 1)
        _wait(lambda: _metered(outage) == 2, "usage after the outage was not written")

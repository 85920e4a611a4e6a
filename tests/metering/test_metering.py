"""Usage metering over HTTP: what was called is what is counted, billed and exported."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from openmaas.app import create_app
from openmaas.metering import UsageEvent
from openmaas.platform import Platform as Services
from openmaas.testing import FakeOpenAI
from tests.access.budgets import PROMPT, remote_model, unique
from tests.accounts import Factory, infer
from tests.conftest import ADMIN_KEY, Platform, make_settings
from tests.models import classifier
from tests.servers import running
from tests.serving.helpers import deploy, register_estimator


def _wait_for_usage(client: httpx.Client, expected: int, **params: object) -> list[dict]:
    """Usage as the API reports it, once the recorder's periodic flush has written it."""
    for _ in range(100):
        rows = client.get("/usage", params=params).json()["usage"]
        if sum(row["requests"] for row in rows) >= expected:
            return rows
        asyncio.run(asyncio.sleep(0.1))
    raise AssertionError(f"usage never reached {expected}: {rows}")


def test_usage_by_application_model_and_day_and_csv(
    platform: Platform, make: Factory, classifiers: list[str]
) -> None:
    a, b = classifiers
    plan = make.plan(models=[a, b], requests_per_minute=4)
    developer = make.developer()
    app = developer.application(plan)
    key = developer.key(app["id"])
    client = make.client()
    for model in (a, a, b):
        assert infer(client, key, model).status_code == 200
    assert infer(client, key, "c").status_code == 403
    assert infer(client, key, a).status_code == 200
    assert infer(client, key, a).status_code == 429

    rows = _wait_for_usage(developer.client, 6, group_by="application,model,status")
    by = {(r["model"], r["status"]): r for r in rows}
    assert all(r["application"] == app["id"] for r in rows)
    assert by[(a, 200)]["requests"] == 3
    assert by[(a, 200)]["input_tokens"] == 0 and by[(b, 200)]["total_tokens"] == 0
    assert by[(a, 429)]["errors"] == 1 and by[(a, 429)]["error_rate"] == 1.0
    assert by[("c", 403)]["requests"] == 1

    daily = developer.client.get("/usage").json()
    assert daily["group_by"] == ["application", "model", "day"]
    today = datetime.now(UTC).date().isoformat()
    assert {r["day"] for r in daily["usage"]} == {today}

    exported = developer.client.get("/usage.csv", params={"group_by": "model"})
    assert exported.headers["content-type"].startswith("text/csv")
    table = {row["model"]: row for row in csv.DictReader(io.StringIO(exported.text))}
    assert table[a]["requests"] == "4" and table[b]["requests"] == "1"

    # Other tests of the session have heavier applications: ask for enough of them.
    params = {"by": "application", "metric": "requests", "limit": 1000}
    top = platform.admin.get("/admin/usage/top", params=params).json()["top"]
    assert app["id"] in {row["application"] for row in top}


@pytest.fixture(scope="module")
def echo(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A remote chat model (the fake upstream) whose tokens are words."""
    with FakeOpenAI() as fake:
        directory = tmp_path_factory.mktemp("metering")
        yield remote_model(platform.admin, unique("metered"), fake.url, "echo", directory)


def test_billing_statement(platform: Platform, make: Factory, echo: str) -> None:
    plan = make.plan(
        price_per_request=0.01, price_per_1k_input_tokens=0.5, price_per_1k_output_tokens=1.5
    )
    developer, app_id, key = make.key_for(plan)
    client = make.client(Authorization=f"Bearer {key}")
    body = {"model": echo, "messages": [{"role": "user", "content": PROMPT}]}
    for _ in range(3):
        answer = client.post("/v1/chat/completions", json=body).json()
        # The fake counts words: 30 in the prompt, 32 in "You said: ..."
        assert answer["usage"] == {"prompt_tokens": 30, "completion_tokens": 32, "total_tokens": 62}
    _wait_for_usage(developer.client, 3)
    statement = developer.client.get("/billing/statements").json()
    assert statement["month"] == datetime.now(UTC).strftime("%Y-%m")
    assert statement["currency"] == "USD"
    [account] = statement["accounts"]
    [line] = account["lines"]
    assert line["application_id"] == app_id and line["requests"] == 3
    assert (line["input_tokens"], line["output_tokens"]) == (90, 96)
    assert line["price_per_1k_output_tokens"] == "1.5"
    # 0.03 + 0.045 + 0.144 = 0.219, rounded half-even to the cent once, on the line.
    assert line["amount"] == "0.22" and account["total"] == "0.22"
    everyone = platform.admin.get("/billing/statements").json()
    assert developer.user_id in {a["user_id"] for a in everyone["accounts"]}
    old = developer.client.get("/billing/statements", params={"month": "2001-01"}).json()
    assert old["accounts"][0]["total"] == "0.00" and old["accounts"][0]["lines"] == []


def test_prices_are_fixed_when_used(platform: Platform, make: Factory, echo: str) -> None:
    """Repricing a plan or moving an application to a free plan leaves used tokens alone."""
    plan = make.plan(
        price_per_request=0.1, price_per_1k_input_tokens=1, price_per_1k_output_tokens=2
    )
    free = make.plan()
    developer, app_id, key = make.key_for(plan)
    client = make.client(Authorization=f"Bearer {key}")
    body = {"model": echo, "messages": [{"role": "user", "content": PROMPT}]}
    assert client.post("/v1/chat/completions", json=body).status_code == 200
    _wait_for_usage(developer.client, 1)
    # 0.1 + 30 * 0.001 + 32 * 0.002 = 0.194
    first = developer.client.get("/billing/statements").json()["accounts"][0]
    assert first["total"] == "0.19"

    assert platform.admin.patch(f"/plans/{plan}", json={"price_per_request": 1}).status_code == 200
    assert client.post("/v1/chat/completions", json=body).status_code == 200
    _wait_for_usage(developer.client, 2)
    moved = developer.client.patch(f"/applications/{app_id}", json={"plan": free})
    assert moved.status_code == 200, moved.text
    account = developer.client.get("/billing/statements").json()["accounts"][0]
    amounts = sorted((line["price_per_request"], line["amount"]) for line in account["lines"])
    # One line per price period, each at its own prices; the free plan reprices nothing.
    assert amounts == [("0.1", "0.19"), ("1", "1.09")]
    assert {line["plan"] for line in account["lines"]} == {plan}
    assert account["total"] == "1.28"


def test_admin_actions_are_audited(platform: Platform, make: Factory) -> None:
    plan = make.plan()
    platform.admin.patch(f"/plans/{plan}", json={"requests_per_day": 5})
    developer = make.developer()
    platform.admin.patch(f"/admin/users/{developer.user_id}", json={"role": "admin"})
    entries = platform.admin.get("/admin/audit", params={"limit": 50}).json()["entries"]
    actions = {(e["action"], e["target"]) for e in entries}
    assert ("plan.create", f"plan:{plan}") in actions
    assert ("plan.update", f"plan:{plan}") in actions
    assert ("user.update", f"user:{developer.user_id}") in actions
    update = next(
        e for e in entries if e["action"] == "plan.update" and e["target"] == f"plan:{plan}"
    )
    assert update["actor"] == "admin-key" and update["details"] == {"requests_per_day": 5}
    assert update["at"]


def test_graceful_shutdown_loses_no_usage(tmp_path_factory: pytest.TempPathFactory) -> None:
    # An hour between flushes: only the final flush on shutdown can write the usage.
    directory = tmp_path_factory.mktemp("shutdown")
    settings = make_settings(directory, usage_flush_seconds=3600)
    metered = 0
    with (
        running(create_app(settings)) as server,
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        ) as admin,
    ):
        register_estimator(admin, "clf", classifier(), directory)
        deploy(admin, "clf", endpoint_name="clf")
        make = Factory(server.url, admin)
        try:
            _developer, _app, key = make.key_for(requests_per_minute=50)
            client = make.client()
            for i in range(120):
                response = infer(client, key if i % 10 else "om_bad_key", "clf")
                # A caller nobody can name (401) has no account to meter.
                if response.status_code != 401:
                    metered += 1
        finally:
            make.close()
    assert metered == 108

    async def count() -> int:
        services = Services.build(settings)
        await services.start()
        try:
            rows = await services.usage_queries.summary(_admin(), group_by=[], start=None, end=None)
            return sum(row["requests"] for row in rows)
        finally:
            await services.stop()

    assert asyncio.run(count()) == metered


def _admin():
    from openmaas.access.service import ADMIN_KEY_PRINCIPAL

    return ADMIN_KEY_PRINCIPAL


def test_recorder_never_raises_and_aggregates(tmp_path_factory: pytest.TempPathFactory) -> None:
    async def run() -> None:
        settings = make_settings(tmp_path_factory.mktemp("recorder"), usage_flush_seconds=3600)
        services = Services.build(settings)
        await services.start()
        recorder = services.usage  # flushed by the test alone (every hour otherwise)
        try:
            now = datetime.now(UTC)
            for _ in range(1000):
                recorder.record(UsageEvent(now, 1, 2, 3, "m", 1, None, "v2", 200, 1.5, 2, 3))
            recorder.record(UsageEvent(now, 1, 2, 3, "m", 1, None, "v2", 200, "x", 2, 3))  # type: ignore[arg-type]
            recorder.record(None)  # type: ignore[arg-type]
            assert recorder.pending == 1000 and recorder.dropped == 2
            await recorder.flush()
            assert recorder.pending == 0
            rows = await services.usage_queries.summary(_admin(), group_by=["protocol"])
            assert rows[0]["requests"] == 1000 and rows[0]["total_tokens"] == 5000
            assert rows[0]["latency_ms_avg"] == 1.5
        finally:
            await services.stop()

    asyncio.run(run())

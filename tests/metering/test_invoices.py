"""Invoices over HTTP: reconciled to the cent, immutable, once across replicas, late usage
as adjustments, archived applications and users still billed."""

from __future__ import annotations

import csv
import io
import secrets
import threading
import time
from collections.abc import Iterator
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from openmaas.app import create_app
from openmaas.cli.main import app as cli
from openmaas.testing import FakeOpenAI
from tests.access.budgets import PROMPT, remote_model, unique
from tests.accounts import PASSWORD, Factory, infer
from tests.conftest import ADMIN_KEY, Platform, make_settings
from tests.metering.months import (
    month_before,
    move_usage_to,
    own_platform,
    this_month,
    wait_for_requests,
)
from tests.models import classifier
from tests.portal.browser import browser  # noqa: F401 (the shared fixture)
from tests.portal.pages import admin_visitor, log_in, submit, visitor
from tests.servers import running
from tests.serving.helpers import deploy, register_estimator

# The fake upstream counts words: 30 in the prompt, 32 in its answer "You said: ...".
INPUT, OUTPUT = 30, 32


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def billing(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    with own_platform(request.param, tmp_path_factory.mktemp("billing")) as platform:
        yield platform


@pytest.fixture(scope="module")
def chat_models(billing: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """Two remote chat models behind the fake upstream."""
    with FakeOpenAI() as fake:
        directory = tmp_path_factory.mktemp("chat")
        yield [
            remote_model(billing.admin, unique(prefix), fake.url, "echo", directory)
            for prefix in ("alpha", "beta")
        ]


@pytest.fixture
def make(billing: Platform) -> Iterator[Factory]:
    factory = Factory(billing.url, billing.admin)
    try:
        yield factory
    finally:
        factory.close()


def _chat(client: httpx.Client, key: str, model: str) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}]}
    answer = client.post(
        "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["prompt_tokens"] == INPUT


def _expected(requests: int, per_request: str, per_in: str, per_out: str) -> Decimal:
    """A line's amount, computed here independently: exact, then half-even to the cent."""
    exact = (
        requests * Decimal(per_request)
        + requests * INPUT * Decimal(per_in) / 1000
        + requests * OUTPUT * Decimal(per_out) / 1000
    )
    return exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)


def _close(platform: Platform, month: str) -> list[str]:
    closed = platform.admin.post("/invoices/close", json={"month": month})
    assert closed.status_code == 200, closed.text
    return list(closed.json()["invoices"])


def _invoice_of(platform: Platform, user_id: int, month: str) -> dict:
    listed = platform.admin.get("/invoices", params={"user_id": user_id, "month": month}).json()
    [summary] = listed["invoices"]
    return platform.admin.get(f"/invoices/{summary['number']}").json()


def test_an_invoice_reconciles_to_the_cent(
    billing: Platform, make: Factory, chat_models: list[str]
) -> None:
    alpha, beta = chat_models
    rule = {
        "models": [beta],
        "name": "beta",
        "price_per_1k_input_tokens": "2.25",
        "price_per_1k_output_tokens": "4.75",
        "price_per_request": "0.0003",
    }
    pro = make.plan(
        price_per_request="0.001",
        price_per_1k_input_tokens="0.5",
        price_per_1k_output_tokens="1.5",
        rules=[rule],
    )
    cheap = make.plan(price_per_1k_input_tokens="0.1", price_per_1k_output_tokens="0.2")
    developer = make.developer()
    first, second = developer.application(pro), developer.application(pro)
    keys = {app["id"]: developer.key(app["id"]) for app in (first, second)}
    client = make.client()
    calls = [(first, alpha, 3), (first, beta, 2), (second, alpha, 1), (second, beta, 4)]
    for app, model, count in calls:
        for _ in range(count):
            _chat(client, keys[app["id"]], model)
    wait_for_requests(developer.client, 10)
    # Mid-month: the plan's request price changes, and the second application moves plan.
    assert (
        billing.admin.patch(f"/plans/{pro}", json={"price_per_request": "0.002"}).status_code == 200
    )
    moved = developer.client.patch(f"/applications/{second['id']}", json={"plan": cheap})
    assert moved.status_code == 200, moved.text
    for app, model, count in [(first, alpha, 2), (second, beta, 3)]:
        for _ in range(count):
            _chat(client, keys[app["id"]], model)
    wait_for_requests(developer.client, 15)

    month = month_before(this_month())
    move_usage_to(billing.settings, month)
    _close(billing, month)
    invoice = _invoice_of(billing, developer.user_id, month)

    expected = {
        (first["name"], alpha, "0.001"): _expected(3, "0.001", "0.5", "1.5"),
        (first["name"], beta, "0.0003"): _expected(2, "0.0003", "2.25", "4.75"),
        (second["name"], alpha, "0.001"): _expected(1, "0.001", "0.5", "1.5"),
        (second["name"], beta, "0.0003"): _expected(4, "0.0003", "2.25", "4.75"),
        (first["name"], alpha, "0.002"): _expected(2, "0.002", "0.5", "1.5"),
        (second["name"], beta, "0"): _expected(3, "0", "0.1", "0.2"),
    }
    got = {
        (line["application"], line["model"], line["price_per_request"]): Decimal(line["amount"])
        for line in invoice["lines"]
    }
    assert got == expected
    assert {line["kind"] for line in invoice["lines"]} == {"usage"}
    assert Decimal(invoice["total"]) == sum(expected.values())
    assert invoice["total"] == invoice["subtotal"] and invoice["currency"] == "USD"
    # Every line's quantities add up to the usage records of the month.
    usage = developer.client.get("/usage", params={"group_by": "month"}).json()["usage"]
    [recorded] = [row for row in usage if row["month"] == month]
    assert sum(line["requests"] for line in invoice["lines"]) == recorded["requests"] == 15
    assert sum(line["input_tokens"] for line in invoice["lines"]) == recorded["input_tokens"]
    assert sum(line["output_tokens"] for line in invoice["lines"]) == recorded["output_tokens"]

    # The developer sees their invoice, as JSON, CSV and a printable page; others do not.
    mine = developer.client.get("/invoices").json()["invoices"]
    assert [item["number"] for item in mine] == [invoice["number"]]
    shown = developer.client.get(f"/invoices/{invoice['number']}", params={"format": "csv"})
    assert shown.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(shown.text)))
    assert table[-1]["position"] == "total" and table[-1]["amount"] == invoice["total"]
    page = developer.client.get(f"/invoices/{invoice['number']}", params={"format": "html"})
    assert page.headers["content-type"].startswith("text/html") and invoice["total"] in page.text
    stranger = make.developer()
    hidden = stranger.client.get(f"/invoices/{invoice['number']}")
    assert hidden.status_code == 404 and hidden.json()["code"] == "invoice_not_found"
    assert stranger.client.get("/invoices").json()["invoices"] == []


def test_invoices_never_change_and_late_usage_is_an_adjustment(
    billing: Platform, make: Factory, chat_models: list[str]
) -> None:
    alpha, _beta = chat_models
    plan = make.plan(price_per_request="0.01", price_per_1k_output_tokens="1")
    developer, _app, key = make.key_for(plan)
    client = make.client()
    # Months of their own: the other tests of the module close other months.
    earlier, last = month_before(this_month(), 6), month_before(this_month(), 5)
    _chat(client, key, alpha)
    wait_for_requests(developer.client, 1)
    move_usage_to(billing.settings, earlier)
    _close(billing, earlier)
    closed = _invoice_of(billing, developer.user_id, earlier)
    assert closed["total"] == _expected_total(1)
    assert _close(billing, earlier) == []  # closed once: a second close does nothing

    # A replica flushes two requests of the closed month after the close ...
    for _ in range(2):
        _chat(client, key, alpha)
    wait_for_requests(developer.client, 3)
    move_usage_to(billing.settings, earlier)
    # ... and one request falls into the month after it.
    _chat(client, key, alpha)
    wait_for_requests(developer.client, 4)
    move_usage_to(billing.settings, last)
    _close(billing, last)

    assert billing.admin.get(f"/invoices/{closed['number']}").json() == closed
    following = _invoice_of(billing, developer.user_id, last)
    kinds = {(line["kind"], line["usage_month"], line["requests"]) for line in following["lines"]}
    assert kinds == {("usage", last, 1), ("adjustment", earlier, 2)}
    assert following["total"] == _expected_total(1, 2)

    for method in ("PATCH", "PUT", "DELETE"):
        refused = billing.admin.request(method, f"/invoices/{closed['number']}", json={})
        assert refused.status_code == 409 and refused.json()["code"] == "invoice_closed"
    assert billing.admin.get(f"/invoices/{closed['number']}").json() == closed


def _expected_total(*counts: int) -> str:
    """Lines of ``count`` requests at 0.01 per request and 1 per 1k output tokens."""
    return str(sum(_expected(count, "0.01", "0", "1") for count in counts))


def test_archived_applications_and_users_stay_on_the_invoice(
    billing: Platform, make: Factory, chat_models: list[str]
) -> None:
    alpha, _beta = chat_models
    plan = make.plan(price_per_request="0.5")
    developer = make.developer()
    kept, deleted = developer.application(plan), developer.application(plan)
    kept_key, deleted_key = developer.key(kept["id"]), developer.key(deleted["id"])
    leaver, _app, leaver_key = make.key_for(plan)
    client = make.client()
    for key in (kept_key, deleted_key, deleted_key, leaver_key):
        _chat(client, key, alpha)
    wait_for_requests(developer.client, 3)
    wait_for_requests(leaver.client, 1)

    assert developer.client.delete(f"/applications/{deleted['id']}").status_code == 204
    refused = client.post(
        "/v1/chat/completions",
        json={"model": alpha, "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {deleted_key}"},
    )
    assert refused.status_code == 401  # its keys stopped working at once
    listed = developer.client.get("/applications").json()["applications"]
    assert [app["id"] for app in listed] == [kept["id"]]
    archived = developer.client.get("/applications", params={"include_archived": True}).json()
    assert {app["status"] for app in archived["applications"]} == {"active", "archived"}
    assert billing.admin.delete(f"/admin/users/{leaver.user_id}").status_code == 200
    assert (
        client.post(
            "/v1/chat/completions",
            json={"model": alpha, "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {leaver_key}"},
        ).status_code
        == 401
    )

    statement = developer.client.get("/billing/statements").json()["accounts"][0]
    assert {line["application"] for line in statement["lines"]} == {kept["name"], deleted["name"]}
    # A purge never removes usage that no invoice holds yet.
    waiting = billing.admin.post(f"/admin/applications/{deleted['id']}/purge")
    assert waiting.status_code == 409 and waiting.json()["code"] == "unbilled_usage"

    month = month_before(this_month(), 3)
    move_usage_to(billing.settings, month)
    _close(billing, month)
    invoice = _invoice_of(billing, developer.user_id, month)
    amounts = {line["application"]: line["amount"] for line in invoice["lines"]}
    assert amounts == {kept["name"]: "0.50", deleted["name"]: "1.00"}
    assert _invoice_of(billing, leaver.user_id, month)["total"] == "0.50"

    # Once invoiced, an admin may purge: audited, and the invoices stay as they were.
    assert billing.admin.post(f"/admin/applications/{kept['id']}/purge").status_code == 409
    purged = billing.admin.post(f"/admin/applications/{deleted['id']}/purge")
    assert purged.status_code == 200 and purged.json()["usage_rows"] >= 1
    assert billing.admin.post(f"/admin/users/{leaver.user_id}/purge").status_code == 200
    assert _invoice_of(billing, developer.user_id, month) == invoice
    assert _invoice_of(billing, leaver.user_id, month)["total"] == "0.50"
    audit = billing.admin.get("/admin/audit", params={"action": "application.purge"}).json()
    assert f"application:{deleted['id']}" in {entry["target"] for entry in audit["entries"]}


def test_two_replicas_close_a_month_once(tmp_path: Path) -> None:
    """Two replicas on one PostgreSQL database: their background jobs, and an admin's
    commands sent to both at once, close last month exactly once."""
    with own_platform("postgres", tmp_path / "a") as first:
        second_settings = make_settings(
            tmp_path / "b", first.settings.database_url, invoice_check_seconds=0.3
        )
        model = f"clf_{secrets.token_hex(3)}"
        register_estimator(first.admin, model, classifier(seed=0), tmp_path)
        deploy(first.admin, model, endpoint_name=model)
        make = Factory(first.url, first.admin)
        try:
            plan = make.plan(price_per_request="0.25")
            developers = []
            for count in (1, 2, 3):
                developer, _app, key = make.key_for(plan)
                for _ in range(count):
                    assert infer(make.client(), key, model).status_code == 200
                wait_for_requests(developer.client, count)
                developers.append(developer)
            move_usage_to(first.settings, month_before(this_month()))
            with running(create_app(second_settings)) as second:
                barrier = threading.Barrier(4)
                closed: list[list[str]] = []

                def close(url: str) -> None:
                    headers = dict(first.admin.headers)
                    with httpx.Client(base_url=url, headers=headers, timeout=60) as admin:
                        barrier.wait()
                        answer = admin.post("/invoices/close")
                        assert answer.status_code == 200, answer.text
                        closed.append(answer.json()["invoices"])

                urls = (first.url, second.url) * 2
                threads = [threading.Thread(target=close, args=(url,)) for url in urls]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                time.sleep(1)  # the second replica's background job has tried by now
                listed = first.admin.get("/invoices").json()["invoices"]
        finally:
            make.close()
    # One close (by whichever replica or job came first) wrote every invoice; the other
    # attempts found the month taken and wrote none.
    numbers = [item["number"] for item in listed]
    assert len(numbers) == len(set(numbers)) == 3
    assert sorted(item["total"] for item in listed) == ["0.25", "0.50", "0.75"]
    assert sum(1 for batch in closed if batch) <= 1
    assert all(batch in ([], sorted(numbers)) for batch in closed)


def test_the_cli_closes_lists_shows_and_exports(
    billing: Platform, make: Factory, chat_models: list[str], tmp_path: Path
) -> None:
    alpha, _beta = chat_models
    plan = make.plan(price_per_request="0.125")
    developer, _app, key = make.key_for(plan)
    _chat(make.client(), key, alpha)
    wait_for_requests(developer.client, 1)

    def run(*args: str) -> str:
        result = CliRunner().invoke(cli, [*args, "--url", billing.url, "--key", ADMIN_KEY])
        assert result.exit_code == 0, result.output
        return result.output

    # Into a file: the server runs in this process, and its log lines share the output.
    exported = tmp_path / "usage.csv"
    run("usage", "export", "--user-id", str(developer.user_id), "--output", str(exported))
    [row] = list(csv.DictReader(io.StringIO(exported.read_text())))
    assert (row["model"], row["requests"], row["amount"]) == (alpha, "1", "0.12")  # half-even

    month = month_before(this_month(), 4)
    move_usage_to(billing.settings, month)
    assert "Closed " + month in run("invoices", "close", "--month", month)
    assert "closed already" in run("invoices", "close", "--month", month)
    listed = run("invoices", "list", "--user-id", str(developer.user_id))
    invoices = billing.admin.get("/invoices", params={"user_id": developer.user_id}).json()
    [number] = [item["number"] for item in invoices["invoices"] if item["month"] == month]
    assert number in listed and "0.12" in listed
    file = tmp_path / "invoice.csv"
    run("invoices", "show", number, "--format", "csv", "--output", str(file))
    assert list(csv.DictReader(io.StringIO(file.read_text())))[-1]["amount"] == "0.12"
    assert "Total: 0.12 USD" in run("invoices", "show", number)


def test_the_portal_cannot_cut_a_bill(
    billing: Platform, make: Factory, chat_models: list[str]
) -> None:
    """Moving an application to a free plan and deleting another, through the portal's
    forms, change no amount already used."""
    alpha, _beta = chat_models
    priced = make.plan(price_per_request="0.05", price_per_1k_output_tokens="3")
    free = make.plan()
    developer = make.developer()
    moved, deleted = developer.application(priced), developer.application(priced)
    client = make.client()
    for app in (moved, deleted, deleted):
        _chat(client, developer.key(app["id"]), alpha)
    wait_for_requests(developer.client, 3)
    before = developer.client.get("/billing/statements").json()["accounts"][0]["total"]
    # One line per application, each rounded: 0.146 -> 0.15 and 0.292 -> 0.29.
    assert before == str(_expected(1, "0.05", "0", "3") + _expected(2, "0.05", "0", "3"))

    web = visitor(billing.url)
    try:
        assert log_in(web, developer.username, PASSWORD).status_code == 303
        page = f"/portal/applications/{moved['id']}"
        changed = submit(web, page, f"{page}/plan", plan=free)
        assert changed.status_code == 303, changed.text
        page = f"/portal/applications/{deleted['id']}"
        assert submit(web, page, f"{page}/delete").status_code == 303
        shown = web.get("/portal/billing")
        assert f"{before} USD" in shown.text
    finally:
        web.close()
    assert developer.client.get(f"/applications/{moved['id']}").json()["plan"] == free
    after = developer.client.get("/billing/statements").json()["accounts"][0]
    assert after["total"] == before
    assert {line["plan"] for line in after["lines"]} == {priced}


def test_invoices_download_from_the_portal_in_a_browser(
    browser,  # noqa: F811 (the browser fixture of tests/portal/test_browser.py)
    billing: Platform,
    make: Factory,
    chat_models: list[str],
    tmp_path: Path,
) -> None:
    alpha, _beta = chat_models
    developer, _app, key = make.key_for(price_per_request="0.075")
    _chat(make.client(), key, alpha)
    wait_for_requests(developer.client, 1)
    month = month_before(this_month(), 7)
    move_usage_to(billing.settings, month)
    _close(billing, month)
    number = _invoice_of(billing, developer.user_id, month)["number"]

    context = browser.new_context(base_url=billing.url, accept_downloads=True)
    context.set_default_timeout(15_000)
    try:
        page = context.new_page()
        page.goto("/portal/login")
        page.get_by_label("Username or e-mail").fill(developer.username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url("**/portal")
        page.goto("/portal/billing")
        assert number in page.inner_text("#invoices")
        with page.expect_download() as downloading:
            page.get_by_role("link", name=f"CSV {number}").click()
        saved = tmp_path / "invoice.csv"
        downloading.value.save_as(saved)
        rows = list(csv.DictReader(io.StringIO(saved.read_text())))
        assert rows[0]["amount"] == "0.08"  # 0.075 rounded half-even to the cent
        assert rows[-1]["position"] == "total" and rows[-1]["amount"] == "0.08"
        with context.expect_page() as opening:
            page.get_by_role("link", name=f"Printable invoice {number}").click()
        printable = opening.value
        printable.wait_for_load_state()
        assert printable.inner_text("h1") == f"Invoice {number}"
        assert printable.inner_text("#invoice-total") == "0.08"
    finally:
        context.close()


def test_the_console_shows_revenue_and_admin_routes_check_the_role(
    billing: Platform, make: Factory, chat_models: list[str]
) -> None:
    alpha, _beta = chat_models
    plan = make.plan(price_per_request="1.5")
    developer, app_id, key = make.key_for(plan)
    _chat(make.client(), key, alpha)
    wait_for_requests(developer.client, 1)
    month = month_before(this_month(), 8)
    move_usage_to(billing.settings, month)
    _close(billing, month)

    web = admin_visitor(billing.url, billing.admin, PASSWORD, "boss")
    try:
        page = web.get("/console/revenue")
        assert page.status_code == 200
        for section in ("by_month", "by_plan", "by_model", "by_account"):
            assert f'id="revenue-{section}"' in page.text
        assert page.text.count("<svg") == 4
        assert month in page.text and plan in page.text and developer.username in page.text
        assert 'data-label="' + plan + '" data-value="150"' in page.text  # 1.50 in cents
    finally:
        web.close()

    for method, path in (
        ("POST", "/invoices/close"),
        ("POST", f"/admin/applications/{app_id}/purge"),
        ("POST", f"/admin/users/{developer.user_id}/purge"),
        ("DELETE", f"/admin/users/{developer.user_id}"),
    ):
        refused = developer.client.request(method, path)
        assert refused.status_code == 403, (path, refused.text)
    assert developer.client.get("/invoices", params={"user_id": 1}).json()["invoices"] == [
        item
        for item in billing.admin.get("/invoices", params={"user_id": developer.user_id}).json()[
            "invoices"
        ]
    ]
    assert developer.client.get("/console/revenue", follow_redirects=False).status_code != 200

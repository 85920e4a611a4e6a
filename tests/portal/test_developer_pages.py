"""The developer portal over HTTP: login, CSRF, applications and keys, catalogue, usage."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest

from tests.accounts import PASSWORD, Factory
from tests.conftest import Platform
from tests.models import classifier
from tests.portal.pages import csrf_of, log_in, submit, visitor
from tests.serving.helpers import deploy, register_estimator


@pytest.fixture
def dev(platform: Platform, make: Factory):
    developer = make.developer()
    client = visitor(platform.url)
    assert log_in(client, developer.username, PASSWORD).status_code == 303
    yield developer, client
    client.close()


def test_anonymous_visitors_are_sent_to_the_login(platform: Platform):
    with visitor(platform.url) as client:
        assert client.get("/", headers={"Accept": "text/html"}).headers["location"] == "/portal"
        assert client.get("/").json()["name"] == "OpenMaaS"
        for page in ("/portal", "/portal/applications", "/portal/usage", "/console/users"):
            response = client.get(page)
            assert response.status_code == 303, page
            assert response.headers["location"].startswith("/portal/login?next=")
        login = client.get("/portal/login")
        assert login.status_code == 200 and "<form" in login.text


def test_plans_page_shows_limits_prices_and_rules_to_anyone(
    platform: Platform, make: Factory
) -> None:
    rule = {"models": ["tiny-*"], "name": "tiny", "tokens_per_minute": 9000}
    name = make.plan(requests_per_minute=77, price_per_1k_output_tokens=1.25, rules=[rule])
    page = platform.anonymous.get("/portal/plans")
    assert page.status_code == 200
    section = page.text.split(f'id="plan-{name}"')[1].split("</article>")[0]
    assert "requests per minute</dt><dd>77" in section
    assert "price per 1k output tokens</dt><dd>1.25" in section
    assert "tiny-*" in section and "tokens per minute: 9,000" in section


def test_wrong_login_does_not_say_who_exists(platform: Platform, make: Factory):
    developer = make.developer()
    with visitor(platform.url) as client:
        wrong_password = log_in(client, developer.username, "not the password")
        nobody = log_in(client, f"nobody{secrets.token_hex(3)}", "whatever1")
        assert wrong_password.status_code == nobody.status_code == 401
        message = "Wrong username or password, or the account is not active yet."
        assert message in wrong_password.text and message in nobody.text
        redirect = log_in(client, developer.username, PASSWORD)
        assert redirect.status_code == 303 and redirect.headers["location"] == "/portal"
        cookie = redirect.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie


def test_forms_need_the_sessions_csrf_token(platform: Platform, dev):
    _, client = dev
    assert client.post("/portal/applications", data={"name": "x"}).status_code == 403
    forged = client.post("/portal/applications", data={"name": "x", "csrf_token": "forged"})
    assert forged.status_code == 403 and "CSRF" in forged.text
    assert "x" not in [a["name"] for a in client.get("/applications").json()["applications"]]


def test_application_key_shown_once_then_only_its_prefix(
    platform: Platform, dev, unique_name: str, tmp_path: Path, make: Factory
):
    _, client = dev
    register_estimator(platform.admin, unique_name, classifier(), tmp_path)
    deploy(platform.admin, unique_name, endpoint_name=unique_name)
    created = submit(
        client, "/portal/applications", "/portal/applications", name="my app", plan=make.plan()
    )
    assert created.status_code == 303
    app_page = created.headers["location"]
    key_page = submit(client, app_page, f"{app_page}/keys", name="laptop")
    assert key_page.status_code == 200 and key_page.headers["cache-control"] == "no-store"
    secret = re.search(r'<code id="new-key">([^<]+)</code>', key_page.text).group(1)
    again = client.get(app_page)
    assert secret not in again.text and secret[:8] in again.text

    answer = httpx.post(
        f"{platform.url}/predict",
        json={"model_name": unique_name, "input": [0.1, 0.2, 0.3]},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text

    key_id = re.search(r"/keys/(\d+)/revoke", again.text).group(1)
    revoked = client.post(f"{app_page}/keys/{key_id}/revoke", data={"csrf_token": csrf_of(again)})
    assert revoked.status_code == 303
    assert "revoked" in client.get(app_page).text


def test_another_developers_application_is_not_found(platform: Platform, dev, make: Factory):
    other = make.developer()
    theirs = other.application(make.plan())
    _, client = dev
    page = client.get(f"/portal/applications/{theirs['id']}")
    assert page.status_code == 404 and theirs["name"] not in page.text
    token = csrf_of(client.get("/portal/applications"))
    stolen = client.post(f"/portal/applications/{theirs['id']}/keys", data={"csrf_token": token})
    assert stolen.status_code == 404
    assert other.client.get(f"/applications/{theirs['id']}/keys").json()["keys"] == []


def test_usage_chart_counts_the_calls_made_with_the_key(
    platform: Platform, make: Factory, unique_name: str, tmp_path: Path
):
    register_estimator(platform.admin, unique_name, classifier(), tmp_path)
    deploy(platform.admin, unique_name, endpoint_name=unique_name)
    developer, _, key = make.key_for(models=[unique_name])
    for _ in range(7):
        response = httpx.post(
            f"{platform.url}/predict",
            json={"model_name": unique_name, "input": [0.1, 0.2, 0.3]},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert response.status_code == 200
    with visitor(platform.url) as client:
        log_in(client, developer.username, PASSWORD)
        deadline = 20
        import time

        started = time.monotonic()
        while True:  # usage is flushed to the database every second in the tests
            page = client.get("/portal/usage")
            bars = re.findall(r'class="bar" data-label="([^"]+)" data-value="([^"]+)"', page.text)
            if sum(float(v) for _, v in bars) >= 7 or time.monotonic() - started > deadline:
                break
            time.sleep(0.5)
        assert page.status_code == 200 and "<svg" in page.text
        # The requests chart comes first: 7 requests, all today.
        requests_bars = bars[:30]
        assert [float(v) for _, v in requests_bars][-1] == 7.0
        assert unique_name in page.text
        catalogue = client.get("/portal/models")
        assert unique_name in catalogue.text and "/v2/models/" in catalogue.text


def test_signup_open_creates_an_account_to_log_in_with(platform: Platform):
    name = f"new{secrets.token_hex(3)}"
    with visitor(platform.url) as client:
        mismatch = submit(
            client,
            "/portal/signup",
            "/portal/signup",
            username=name,
            email=f"{name}@x.org",
            password="longpassword",
            confirm="other",
        )
        assert mismatch.status_code == 400 and "differ" in mismatch.text
        created = submit(
            client,
            "/portal/signup",
            "/portal/signup",
            username=name,
            email=f"{name}@x.org",
            password="longpassword",
            confirm="longpassword",
        )
        # The same answer as for a taken name: the page must not tell who has an account.
        assert created.status_code == 303 and created.headers["location"] == "/portal/login"
        assert "log in to use it" in unquote(client.get("/portal/login").text)
        assert log_in(client, name, "longpassword").status_code == 303
        assert f"Hello, {name}" in client.get("/portal").text


def test_developers_get_403_on_the_console(platform: Platform, dev):
    _, client = dev
    for page in ("/console", "/console/users", "/console/plans", "/console/audit"):
        response = client.get(page)
        assert response.status_code == 403 and "Not allowed" in response.text, page
    token = csrf_of(client.get("/portal/applications"))
    assert client.post("/console/plans", data={"csrf_token": token, "name": "x"}).status_code == 403


@pytest.mark.parametrize("mode", ["approval", "closed"])
def test_signup_waiting_for_approval_or_closed(tmp_path: Path, mode: str):
    from openmaas.app import create_app
    from tests.conftest import make_settings
    from tests.servers import running

    settings = make_settings(tmp_path, signup=mode)
    with running(create_app(settings)) as server, visitor(server.url) as client:
        page = client.get("/portal/signup")
        if mode == "closed":
            assert "Sign-up is closed" in page.text and "<form" not in page.text.split("<main>")[1]
            refused = client.post(
                "/portal/signup",
                data={
                    "username": "shut",
                    "email": "s@x.org",
                    "password": PASSWORD,
                    "confirm": PASSWORD,
                    "csrf_token": csrf_of(client.get("/portal/login")),
                },
            )
            assert refused.status_code == 403 and "Sign-up is closed" in refused.text
            return
        assert "wait for an administrator" in page.text
        created = client.post(
            "/portal/signup",
            data={
                "username": "waiter",
                "email": "w@x.org",
                "password": PASSWORD,
                "confirm": PASSWORD,
                "csrf_token": csrf_of(page),
            },
        )
        assert created.status_code == 303 and created.headers["location"] == "/portal/login"
        assert "wait for an admin" in unquote(client.get("/portal/login").text)
        assert log_in(client, "waiter", PASSWORD).status_code == 403

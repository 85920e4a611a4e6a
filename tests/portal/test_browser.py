"""The pages in a real browser: Debian's Chromium driven by Playwright, headless.

Skipped with a reason where Chromium is not installed, except under CI=true, where a
missing browser is a failure: the install step provides it.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import httpx
import pytest

from tests.accounts import PASSWORD, Factory
from tests.conftest import Platform
from tests.models import classifier
from tests.serving.helpers import deploy, register_estimator


@pytest.fixture
def page(browser, platform: Platform):
    context = browser.new_context(base_url=platform.url)
    context.set_default_timeout(15_000)
    opened = context.new_page()
    yield opened
    context.close()


def test_a_developer_signs_up_gets_a_key_and_sees_the_usage_chart(
    page, platform: Platform, make: Factory, unique_name: str, tmp_path: Path
):
    register_estimator(platform.admin, unique_name, classifier(), tmp_path)
    deploy(platform.admin, unique_name, endpoint_name=unique_name)
    plan = make.plan(models=[unique_name])
    username = f"web{secrets.token_hex(3)}"

    page.goto("/portal")
    page.get_by_role("link", name="Sign up").first.click()
    page.get_by_label("Username").fill(username)
    page.get_by_label("E-mail").fill(f"{username}@example.org")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    # Sign-up answers alike whether the name was free or not: the login tells.
    page.wait_for_url("**/portal/login")
    assert "log in to use it" in page.inner_text(".flash")
    page.get_by_label("Username or e-mail").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/portal")
    assert f"Hello, {username}" in page.inner_text("h1")

    page.get_by_role("link", name="Applications").first.click()
    page.get_by_label("Name").fill("browser app")
    page.get_by_label("Plan").select_option(plan)
    page.get_by_role("button", name="Create application").click()
    page.wait_for_url("**/portal/applications/*")
    assert "Application browser app created." in page.inner_text(".flash")

    page.get_by_role("button", name="Create key").click()
    key = page.inner_text("#new-key").strip()
    assert key.startswith("om_")
    page.get_by_role("button", name="Copy").click()

    for _ in range(3):
        answer = httpx.post(
            f"{platform.url}/predict",
            json={"model_name": unique_name, "input": [0.1, 0.2, 0.3]},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text

    deadline = time.monotonic() + 15
    while True:
        page.get_by_role("link", name="Usage").first.click()
        bars = page.locator("#requests-chart rect.bar")
        today = float(bars.nth(bars.count() - 1).get_attribute("data-value") or 0)
        if today >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert today == 3
    assert page.locator("#requests-chart svg").is_visible()
    assert unique_name in page.inner_text("table")

    page.get_by_role("link", name="Models").first.click()
    assert page.locator(f"#model-{unique_name}").is_visible()


def test_an_admin_suspends_an_application_and_deploys_from_the_console(
    page, platform: Platform, make: Factory, unique_name: str, tmp_path: Path
):
    admin_name = f"boss{secrets.token_hex(3)}"
    platform.admin.post(
        "/admin/users",
        json={
            "username": admin_name,
            "email": f"{admin_name}@example.org",
            "password": PASSWORD,
            "role": "admin",
        },
    ).raise_for_status()
    developer = make.developer()
    app = developer.application(make.plan())
    register_estimator(platform.admin, unique_name, classifier(), tmp_path)

    page.goto("/console")
    page.wait_for_url("**/portal/login**")
    page.get_by_label("Username or e-mail").fill(admin_name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/console")
    assert "Admin console" in page.inner_text("h1")

    page.get_by_role("link", name="Applications").nth(1).click()
    page.locator(f"#app-{app['id']}").get_by_role("button", name="Suspend").click()
    assert "is suspended" in page.inner_text(".flash")
    assert developer.client.get(f"/applications/{app['id']}").json()["status"] == "suspended"

    page.get_by_role("link", name="Models & deployments").click()
    page.locator("select[name=model_name]").select_option(unique_name)
    page.get_by_label("Endpoint name").fill(f"{unique_name}_web")
    page.get_by_role("button", name="Deploy", exact=True).click()
    assert f"as {unique_name}_web" in page.inner_text(".flash")
    answer = platform.admin.post(f"/predict/{unique_name}_web", json={"input": [0.1, 0.2, 0.3]})
    assert answer.status_code == 200
    page.locator(f"#endpoint-{unique_name}_web").get_by_role("button", name="Undeploy").click()
    assert f"Undeployed {unique_name}_web" in page.inner_text(".flash")
    assert (
        platform.admin.post(f"/predict/{unique_name}_web", json={"input": [0.1]}).status_code == 404
    )

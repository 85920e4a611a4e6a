"""The admin console over HTTP: approvals, suspensions, plans, deploy and undeploy."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import httpx
import pytest

from tests.accounts import PASSWORD, Factory
from tests.conftest import Platform
from tests.models import classifier
from tests.portal.pages import admin_visitor, log_in, submit, visitor
from tests.serving.helpers import register_estimator


@pytest.fixture
def console(platform: Platform):
    client = admin_visitor(platform.url, platform.admin, PASSWORD, "admin")
    yield client
    client.close()


def test_every_console_page_renders(console: httpx.Client):
    for page in (
        "",
        "/users",
        "/applications",
        "/plans",
        "/deployments",
        "/usage",
        "/billing",
        "/revenue",
        "/audit",
    ):
        response = console.get(f"/console{page}")
        assert response.status_code == 200, (page, response.text[:500])
        assert "<h1>" in response.text
    assert "<svg" in console.get("/console").text


def test_approve_suspend_and_change_plan(
    platform: Platform, console: httpx.Client, make: Factory, unique_name: str, tmp_path: Path
):
    register_estimator(platform.admin, unique_name, classifier(), tmp_path)
    assert (
        platform.admin.post(
            "/deployments/deploy", json={"model_name": unique_name, "endpoint_name": unique_name}
        ).status_code
        == 201
    )
    gated = make.plan(approval_required=True, models=[unique_name])
    developer = make.developer()
    app = developer.application(gated)
    assert app["status"] == "pending"
    key = developer.key(app["id"])
    body = {"model_name": unique_name, "input": [0.1, 0.2, 0.3]}
    headers = {"Authorization": f"Bearer {key}"}
    assert (
        httpx.post(f"{platform.url}/predict", json=body, headers=headers, timeout=30).status_code
        == 403
    )

    approved = submit(
        console, "/console/applications", f"/console/applications/{app['id']}", status="active"
    )
    assert approved.status_code == 303
    assert "is active" in console.get(approved.headers["location"]).text
    assert _eventually(
        lambda: (
            httpx.post(
                f"{platform.url}/predict", json=body, headers=headers, timeout=30
            ).status_code
            == 200
        )
    )

    suspended = submit(
        console, "/console/applications", f"/console/applications/{app['id']}", status="suspended"
    )
    assert suspended.status_code == 303
    assert _eventually(
        lambda: (
            httpx.post(
                f"{platform.url}/predict", json=body, headers=headers, timeout=30
            ).status_code
            == 403
        )
    )
    other = make.plan()
    moved = submit(
        console, "/console/applications", f"/console/applications/{app['id']}", plan=other
    )
    assert moved.status_code == 303
    assert developer.client.get(f"/applications/{app['id']}").json()["plan"] == other
    audit = console.get("/console/audit").text
    assert f"application:{app['id']}" in audit


def test_plans_are_created_and_checked(console: httpx.Client, platform: Platform):
    name = f"gold-{secrets.token_hex(3)}"
    created = submit(
        console,
        "/console/plans",
        "/console/plans",
        name=name,
        models="llm-*, clf",
        requests_per_minute="120",
        price_per_request="0.01",
    )
    assert created.status_code == 303
    plan = platform.admin.get(f"/plans/{name}").json()
    assert plan["models"] == ["llm-*", "clf"] and plan["requests_per_minute"] == 120
    refused = submit(
        console, "/console/plans", "/console/plans", name=name, requests_per_minute="-5"
    )
    assert refused.status_code == 400 and "requests_per_minute" in refused.text

    rules = '[{"models": ["llm-*"], "name": "llm", "output_tokens_per_minute": 500}]'
    changed = submit(
        console, "/console/plans", "/console/plans", name=name, models="*", rules=rules
    )
    assert changed.status_code == 303
    plan = platform.admin.get(f"/plans/{name}").json()
    assert plan["rules"] == [{"models": ["llm-*"], "name": "llm", "output_tokens_per_minute": 500}]
    page = console.get("/console/plans").text
    assert "output tokens per minute: 500" in page
    for bad in ("[{", '[{"models": []}]'):
        refused = submit(console, "/console/plans", "/console/plans", name=name, rules=bad)
        assert refused.status_code == 400 and "rules" in refused.text


def test_deploy_and_undeploy_from_the_console(
    platform: Platform, console: httpx.Client, unique_name: str, tmp_path: Path
):
    register_estimator(platform.admin, unique_name, classifier(), tmp_path)
    endpoint = f"{unique_name}_console"
    deployed = submit(
        console,
        "/console/deployments",
        "/console/deployments/deploy",
        model_name=unique_name,
        endpoint_name=endpoint,
        max_batch_size="4",
    )
    assert deployed.status_code == 303, deployed.text
    page = console.get("/console/deployments").text
    assert f'id="endpoint-{endpoint}"' in page
    answer = platform.admin.post(f"/predict/{endpoint}", json={"input": [0.1, 0.2, 0.3]})
    assert answer.status_code == 200
    undeployed = submit(
        console, "/console/deployments", "/console/deployments/undeploy", endpoint_name=endpoint
    )
    assert undeployed.status_code == 303
    assert f'id="endpoint-{endpoint}"' not in console.get("/console/deployments").text
    missing = submit(
        console, "/console/deployments", "/console/deployments/undeploy", endpoint_name=endpoint
    )
    assert missing.status_code == 404 and "Not found" in missing.text


def test_pending_signups_are_approved_in_the_console(console: httpx.Client, platform: Platform):
    # Approval mode is a setting; an admin-created unapproved user stands in for a sign-up.
    name = f"wait{secrets.token_hex(3)}"
    created = platform.admin.post(
        "/admin/users", json={"username": name, "email": f"{name}@x.org", "password": PASSWORD}
    ).json()
    platform.admin.patch(f"/admin/users/{created['id']}", json={"approved": False})
    with visitor(platform.url) as client:
        assert log_in(client, name, PASSWORD).status_code == 403  # not approved yet
        users = console.get("/console/users").text
        assert re.search(rf'id="user-{name}".*?pending', users, re.S)
        assert (
            submit(
                console, "/console/users", f"/console/users/{created['id']}", action="approve"
            ).status_code
            == 303
        )
        assert _eventually(lambda: log_in(client, name, PASSWORD).status_code == 303)


def _eventually(check, seconds: float = 3.0) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def test_bad_console_input_is_a_clear_400(console: httpx.Client, make: Factory):
    app = make.developer().application(make.plan())
    target = f"/console/applications/{app['id']}"
    bogus = submit(console, "/console/applications", target, status="bogus")
    assert bogus.status_code == 400 and "unknown status" in bogus.text
    unknown_plan = submit(console, "/console/applications", target, plan="no-such-plan")
    assert unknown_plan.status_code == 404
    too_big = submit(
        console, "/console/applications", "/console/applications/99999999999", status="active"
    )
    assert too_big.status_code in (400, 404, 422)
    assert (
        submit(console, "/console/users", "/console/users/1", action="explode").status_code == 400
    )

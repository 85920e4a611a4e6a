"""Applications and keys over HTTP, and the gate in front of the inference route."""

from __future__ import annotations

import base64
import time

import httpx
import pytest

from tests.accounts import ROW, Factory, infer
from tests.conftest import ADMIN_KEY, Platform


@pytest.fixture
def model(classifiers: list[str]) -> str:
    return classifiers[0]


def test_keys_are_shown_once_and_work_in_every_documented_place(make: Factory, model: str) -> None:
    developer = make.developer()
    plan = make.plan()
    app = developer.application(plan)
    assert app["status"] == "active" and app["plan"] == plan
    created = developer.client.post(f"/applications/{app['id']}/keys", json={"name": "ci"}).json()
    key = created["key"]
    assert key.startswith(created["prefix"] + "_")
    listed = developer.client.get(f"/applications/{app['id']}/keys").json()["keys"]
    assert [k["prefix"] for k in listed] == [created["prefix"]]
    assert key not in str(listed)

    client = make.client()
    basic_user = base64.b64encode(f"{key}:".encode()).decode()
    basic_password = base64.b64encode(f"anyone:{key}".encode()).decode()
    for headers in (
        {"Authorization": f"Bearer {key}"},
        {"X-API-Key": key},
        {"Authorization": f"Basic {basic_user}"},
        {"Authorization": f"Basic {basic_password}"},
    ):
        response = client.post(
            "/predict", json={"model_name": model, "input": ROW}, headers=headers
        )
        assert response.status_code == 200, response.text
        assert response.json()["model_name"] == model


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer om_deadbeef_nothing"},
        {"Authorization": "Bearer " + "x" * 8000},
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:\x00").decode()},
        {"Authorization": "Digest abc"},
        {"Authorization": b"Bearer \xff\xfe\xfd"},
        {"X-API-Key": "x"},
        {"X-API-Key": "om_12345678_" + "a" * 43},
    ],
)
def test_wrong_or_malformed_credentials_are_401(make: Factory, model: str, headers: dict) -> None:
    body = {"model_name": model, "input": ROW}
    response = make.client().post("/predict", json=body, headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["code"] in {"missing_credentials", "invalid_credentials"}


def test_revocation_rotation_and_expiry(make: Factory, model: str) -> None:
    developer, app_id, key = make.key_for()
    client = make.client()
    assert infer(client, key, model).status_code == 200
    keys = developer.client.get(f"/applications/{app_id}/keys").json()["keys"]
    rotated = developer.client.post(f"/applications/{app_id}/keys/{keys[0]['id']}/rotate")
    assert rotated.status_code == 201, rotated.text
    new_key = rotated.json()["key"]
    assert infer(client, key, model).status_code == 401
    assert infer(client, new_key, model).status_code == 200
    revoked = developer.client.delete(f"/applications/{app_id}/keys/{rotated.json()['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    assert infer(client, new_key, model).status_code == 401

    expiring = developer.client.post(
        f"/applications/{app_id}/keys",
        json={
            "name": "short",
            "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2)),
        },
    ).json()
    assert infer(client, expiring["key"], model).status_code == 200
    time.sleep(2.2)
    response = infer(client, expiring["key"], model)
    assert response.status_code == 401 and response.json()["code"] == "key_expired"
    past = developer.client.post(
        f"/applications/{app_id}/keys", json={"expires_at": "2001-01-01T00:00:00Z"}
    )
    assert past.status_code == 400 and past.json()["code"] == "invalid_expiry"


def test_last_used_is_written_in_batches(platform: Platform, make: Factory, model: str) -> None:
    developer, app_id, key = make.key_for()
    assert infer(make.client(), key, model).status_code == 200
    deadline = time.monotonic() + platform.settings.usage_flush_seconds + 5
    while time.monotonic() < deadline:
        keys = developer.client.get(f"/applications/{app_id}/keys").json()["keys"]
        if keys[0]["last_used_at"]:
            break
        time.sleep(0.2)
    assert keys[0]["last_used_at"]


def test_plan_models_status_and_approval(
    platform: Platform, make: Factory, classifiers: list[str]
) -> None:
    model, other = classifiers
    plan = make.plan(models=["llama-*", model], approval_required=True)
    developer = make.developer()
    app = developer.application(plan)
    assert app["status"] == "pending"
    key = developer.key(app["id"])
    client = make.client()
    response = infer(client, key, "llama-3")
    assert response.status_code == 403 and response.json()["code"] == "application_pending"
    # Only admins approve; a developer sending a status is refused.
    refused = developer.client.patch(f"/applications/{app['id']}", json={"status": "active"})
    assert refused.status_code == 403
    approved = platform.admin.patch(f"/applications/{app['id']}", json={"status": "active"})
    assert approved.status_code == 200 and approved.json()["status"] == "active"
    assert infer(client, key, model).status_code == 200
    outside = infer(client, key, other)
    assert outside.status_code == 403 and outside.json()["code"] == "model_not_in_plan"
    platform.admin.patch(f"/applications/{app['id']}", json={"status": "suspended"})
    response = infer(client, key, "llama-3")
    assert response.status_code == 403 and response.json()["code"] == "application_suspended"


def test_plan_changes_apply_at_once(
    platform: Platform, make: Factory, classifiers: list[str]
) -> None:
    plan = make.plan(models=[classifiers[0]])
    _developer, _app_id, key = make.key_for(plan)
    client = make.client()
    assert infer(client, key, classifiers[1]).status_code == 403
    assert platform.admin.patch(f"/plans/{plan}", json={"models": ["*"]}).status_code == 200
    assert infer(client, key, classifiers[1]).status_code == 200


def test_admins_pass_without_limits_and_personal_keys_do_not_call_models(
    platform: Platform, make: Factory, model: str
) -> None:
    client = make.client()
    response = infer(client, ADMIN_KEY, model)
    assert response.status_code == 200 and "x-ratelimit-limit" not in response.headers
    developer = make.developer()
    personal = developer.client.post("/me/keys", json={"name": "cli"}).json()["key"]
    response = infer(client, personal, model)
    assert response.status_code == 403 and response.json()["code"] == "application_key_required"
    # ...and an application's key does not manage anything.
    _developer, _app, app_key = make.key_for()
    response = make.client(Authorization=f"Bearer {app_key}").get("/applications")
    assert response.status_code == 403 and response.json()["code"] == "application_key"


def test_developers_are_isolated(platform: Platform, make: Factory, model: str) -> None:
    alice, bob = make.developer("alice"), make.developer("bob")
    plan = make.plan()
    app = alice.application(plan)
    key_id = alice.client.post(f"/applications/{app['id']}/keys", json={}).json()["id"]
    assert infer(make.client(), alice.key(app["id"]), model).status_code == 200

    assert bob.client.get("/applications").json()["applications"] == []
    for method, path, body in (
        ("GET", f"/applications/{app['id']}", None),
        ("PATCH", f"/applications/{app['id']}", {"name": "mine"}),
        ("DELETE", f"/applications/{app['id']}", None),
        ("GET", f"/applications/{app['id']}/keys", None),
        ("POST", f"/applications/{app['id']}/keys", {}),
        ("DELETE", f"/applications/{app['id']}/keys/{key_id}", None),
        ("POST", f"/applications/{app['id']}/keys/{key_id}/rotate", None),
        ("DELETE", f"/me/keys/{key_id}", None),
    ):
        response = bob.client.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
    # Bob's filters cannot reach Alice's usage or statements either.
    usage = bob.client.get("/usage", params={"user_id": alice.user_id, "application_id": app["id"]})
    assert usage.status_code == 200 and usage.json()["usage"] == []
    statements = bob.client.get("/billing/statements", params={"user_id": alice.user_id})
    assert [a["user_id"] for a in statements.json()["accounts"]] in ([], [bob.user_id])
    # Admins see both.
    everyone = platform.admin.get("/applications").json()["applications"]
    assert app["id"] in {a["id"] for a in everyone}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/applications/0", None),
        ("GET", "/applications/99999999999999", None),
        ("GET", "/applications/abc", None),
        ("POST", "/applications", {"name": ""}),
        ("POST", "/applications", {"name": "x", "plan": "no-such-plan"}),
        ("POST", "/applications", {"name": "x", "extra": 1}),
        ("POST", "/applications", [1, 2]),
        ("PATCH", "/applications/1", {"status": "bogus"}),
        ("POST", "/applications/1/keys", {"expires_in_days": 0}),
        ("POST", "/applications/1/keys", {"expires_at": "not a date"}),
        ("GET", "/usage?start=2024-13-01", None),
        ("GET", "/usage?group_by=password", None),
        ("GET", "/usage?start=2024-02-01&end=2024-01-01", None),
        ("GET", "/billing/statements?month=2024-13", None),
        ("GET", "/usage?user_id=-1", None),
    ],
)
def test_ugly_requests_are_4xx_json(make: Factory, method: str, path: str, body: object) -> None:
    developer = make.developer()
    response = developer.client.request(method, path, json=body)
    assert 400 <= response.status_code < 500, response.text
    assert {"code", "message"} <= set(response.json())


def test_raw_garbage_bodies(make: Factory) -> None:
    developer = make.developer()
    for content in (b"{", b"\xff\xfe", b"null", b'"x"', b"[]" * 1000):
        response = developer.client.post(
            "/applications", content=content, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 422, response.text
    huge = developer.client.post("/applications", content=b"x" * (2 * 1024 * 1024))
    assert huge.status_code == 413


def test_delete_application_kills_its_keys(make: Factory, model: str) -> None:
    developer, app_id, key = make.key_for()
    assert developer.client.delete(f"/applications/{app_id}").status_code == 204
    assert infer(make.client(), key, model).status_code == 401


def test_requests_from_the_admin_key_need_an_owner(platform: Platform) -> None:
    response = platform.admin.post("/applications", json={"name": "x", "plan": "free"})
    assert response.status_code in (403, 404)
    assert isinstance(platform.admin.get("/me").json(), dict)


def test_a_real_client_never_sees_500(make: Factory) -> None:
    with httpx.Client(base_url=make.url) as client:
        for path in ("/predict", "/applications", "/me", "/usage", "/billing/statements"):
            response = client.get(path)
            assert response.status_code < 500

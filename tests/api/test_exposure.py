"""What the platform shows, and to whom: metrics, API description, errors, pages, cookies,
files. ``openmaas serve``'s own limits and log lines are in tests/cli/test_serve_limits.py."""

from __future__ import annotations

import json
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from openmaas.app import create_app
from tests.accounts import PASSWORD, Factory
from tests.conftest import ADMIN_KEY, Platform, make_settings
from tests.servers import free_port, running
from tests.serving.helpers import deploy, register

_PAGE_HEADERS = ("Content-Security-Policy", "X-Frame-Options", "Referrer-Policy")


def test_metrics_need_the_admin_key(platform: Platform, make: Factory) -> None:
    anonymous = platform.anonymous.get("/metrics")
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.json()["code"] == "missing_credentials"
    _developer, _app, key = make.key_for()
    developer = platform.anonymous.get("/metrics", headers={"Authorization": f"Bearer {key}"})
    assert developer.status_code == 403, developer.text
    scraped = platform.admin.get("/metrics")
    assert scraped.status_code == 200
    assert "openmaas_loaded_models" in scraped.text


def test_metrics_can_be_public(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, metrics_public=True)
    with running(create_app(settings)) as server:
        scraped = httpx.get(f"{server.url}/metrics")
        assert scraped.status_code == 200
        assert "openmaas_loaded_models" in scraped.text


def test_openapi_names_deployments_only_to_known_callers(
    platform: Platform, classifiers: list[str], make: Factory
) -> None:
    name = classifiers[0]
    anonymous = platform.anonymous.get("/openapi.json").json()
    assert not any(name in path for path in anonymous["paths"])
    assert name not in json.dumps(anonymous)
    admin = platform.admin.get("/openapi.json").json()
    assert f"/predict/{name}" in admin["paths"]
    # A developer sees the models its plan allows, and no others.
    plan = make.plan(models=[classifiers[1]])
    _developer, _app, key = make.key_for(plan)
    described = platform.anonymous.get(
        "/openapi.json", headers={"Authorization": f"Bearer {key}"}
    ).json()
    assert f"/predict/{classifiers[1]}" in described["paths"]
    assert f"/predict/{name}" not in described["paths"]


def test_errors_name_no_upstream_and_no_library_text(platform: Platform, tmp_path: Path) -> None:
    down = f"127.0.0.1:{free_port()}"
    name = f"remote-{secrets.token_hex(3)}"
    location = tmp_path / f"{name}.v2.json"
    location.write_text(json.dumps({"base_url": f"http://{down}", "model": "upstream-name"}))
    register(platform.admin, name, location)
    deploy(platform.admin, name, endpoint_name=name, warm=False)
    tensor = {"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1.0, 2.0]}
    for path, body in (
        (f"/v2/models/{name}/infer", {"inputs": [tensor]}),
        (f"/predict/{name}", {"input": [[1.0, 2.0]]}),
    ):
        response = platform.admin.post(path, json=body)
        assert response.status_code in (502, 503, 504), response.text
        for secret in (down, "127.0.0.1", "upstream-name", "Connect", "aiohttp", "Errno"):
            assert secret not in response.text, (secret, response.text)
    # An artifact no library can read: which kind it is not, not what the library said.
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x01 this is not a protobuf" * 10)
    model = f"broken-{secrets.token_hex(3)}"
    assert platform.admin.post("/models", json={"name": model}).status_code == 201
    with broken.open("rb") as handle:
        refused = platform.admin.post(
            f"/models/{model}/versions",
            files={"artifact": ("broken.onnx", handle, "application/octet-stream")},
        )
    assert refused.status_code == 400, refused.text
    assert refused.json()["code"] == "invalid_artifact"
    for secret in (str(tmp_path), "ONNXRuntimeError", "INVALID_PROTOBUF", "Load model"):
        assert secret not in refused.text, (secret, refused.text)
    assert "ONNX" in refused.json()["message"]


def test_pages_send_browser_protections(platform: Platform, make: Factory) -> None:
    developer = make.developer()
    for client, path in (
        (platform.anonymous, "/portal/login"),
        (platform.anonymous, "/portal/signup"),
        (developer.client, "/portal"),
        (developer.client, "/portal/applications"),
        (make.login(developer.username), "/console"),
    ):
        response = client.get(path, follow_redirects=False)
        assert response.status_code in (200, 303, 403), (path, response.status_code)
        for header in _PAGE_HEADERS:
            assert header in response.headers, (path, header)
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy
        assert "frame-ancestors 'none'" in policy
        assert response.headers["X-Frame-Options"] == "DENY"
    api = platform.admin.get("/models")
    assert api.headers["X-Content-Type-Options"] == "nosniff"


def _login(url: str, username: str, **headers: str) -> str:
    response = httpx.post(
        f"{url}/auth/login",
        json={"username": username, "password": PASSWORD},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    return response.headers["set-cookie"]


@pytest.fixture(scope="module")
def behind_a_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server that believes X-Forwarded-Proto from 127.0.0.1 (the tests' own address)."""
    settings = make_settings(tmp_path_factory.mktemp("proxied"), trusted_proxies=["127.0.0.1"])
    with running(create_app(settings)) as server:
        yield server.url


def _developer_on(url: str) -> str:
    username = f"dev{secrets.token_hex(4)}"
    created = httpx.post(
        f"{url}/admin/users",
        json={"username": username, "email": f"{username}@example.org", "password": PASSWORD},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )
    assert created.status_code == 201, created.text
    return username


def test_cookies_are_secure_behind_https(platform: Platform, behind_a_proxy: str) -> None:
    username = _developer_on(behind_a_proxy)
    assert "secure" not in _login(behind_a_proxy, username).lower()
    cookie = _login(behind_a_proxy, username, **{"X-Forwarded-Proto": "https"})
    assert "; secure" in cookie.lower()
    # A server that trusts no proxy ignores a client's own claim of HTTPS.
    anyone = _developer_on(platform.url)
    assert "secure" not in _login(platform.url, anyone, **{"X-Forwarded-Proto": "https"}).lower()


def test_secure_cookies_setting(tmp_path: Path) -> None:
    with running(create_app(make_settings(tmp_path, secure_cookies=True))) as server:
        username = _developer_on(server.url)
        assert "; secure" in _login(server.url, username).lower()


def test_data_directory_and_database_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh" / "data"
    with running(create_app(make_settings(data_dir))) as server:
        assert httpx.get(f"{server.url}/health/ready").status_code == 200
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        database = data_dir / "openmaas.db"
        assert stat.S_IMODE(database.stat().st_mode) == 0o600
        for journal in data_dir.glob("openmaas.db-*"):
            assert stat.S_IMODE(journal.stat().st_mode) & 0o077 == 0, journal

"""Accounts over HTTP: sign-up, login sessions, CSRF, passwords, admin user management."""

from __future__ import annotations

import secrets

import httpx
import pytest

from openmaas.app import create_app
from tests.accounts import PASSWORD, Factory
from tests.conftest import Platform, make_settings
from tests.servers import running


def _signup(client: httpx.Client, username: str, password: str = PASSWORD) -> httpx.Response:
    return client.post(
        "/auth/signup",
        json={"username": username, "email": f"{username}@example.org", "password": password},
    )


def test_signup_login_me_logout(platform: Platform, make: Factory) -> None:
    name = f"sign{secrets.token_hex(4)}"
    response = _signup(platform.anonymous, name)
    assert response.status_code == 202, response.text
    assert response.json()["pending_approval"] is False
    # Taken: the same answer (test_logins.py), and no second account.
    assert _signup(platform.anonymous, name).json() == response.json()

    client = make.client()
    wrong = client.post("/auth/login", json={"username": name, "password": "nope-nope"})
    assert wrong.status_code == 401 and wrong.json()["code"] == "invalid_login"
    nobody = client.post("/auth/login", json={"username": "nobody-x", "password": "nope-nope"})
    assert nobody.status_code == 401 and nobody.json()["code"] == "invalid_login"

    login = client.post(
        "/auth/login", json={"username": f"{name}@EXAMPLE.org", "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    cookie = login.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert client.get("/me").json()["username"] == name
    assert client.get("/me").json()["role"] == "developer"
    assert client.get("/auth/session").json()["csrf_token"] == login.json()["csrf_token"]
    assert client.post("/auth/logout").status_code == 204
    assert client.get("/me").status_code == 401


def test_cookie_writes_need_the_csrf_token(make: Factory) -> None:
    developer = make.developer()
    token = developer.client.headers.pop("X-CSRF-Token")
    response = developer.client.post("/applications", json={"name": "x"})
    assert response.status_code == 403 and response.json()["code"] == "csrf_failed"
    response = developer.client.post(
        "/applications", json={"name": "x"}, headers={"X-CSRF-Token": "forged"}
    )
    assert response.status_code == 403
    assert developer.client.get("/applications").status_code == 200  # reads need none
    developer.client.headers["X-CSRF-Token"] = token


def test_password_change_ends_other_sessions(make: Factory) -> None:
    developer = make.developer()
    other = make.login(developer.username)
    response = developer.client.post(
        "/auth/password", json={"current_password": "wrong-wrong", "new_password": "n3w-password"}
    )
    assert response.status_code == 401
    response = developer.client.post(
        "/auth/password", json={"current_password": PASSWORD, "new_password": "n3w-password"}
    )
    assert response.status_code == 200, response.text
    developer.client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
    assert developer.client.get("/me").status_code == 200  # renewed session
    assert other.get("/me").status_code == 401  # the old one is void
    make.login(developer.username, "n3w-password")


def test_disabled_users_are_refused_everywhere(platform: Platform, make: Factory) -> None:
    developer = make.developer()
    personal = developer.client.post("/me/keys", json={"name": "cli"}).json()["key"]
    assert make.client(Authorization=f"Bearer {personal}").get("/me").status_code == 200
    response = platform.admin.patch(f"/admin/users/{developer.user_id}", json={"disabled": True})
    assert response.status_code == 200 and response.json()["disabled"] is True
    assert developer.client.get("/me").json()["code"] == "account_disabled"
    assert make.client(Authorization=f"Bearer {personal}").get("/me").status_code == 403
    response = make.client().post(
        "/auth/login", json={"username": developer.username, "password": PASSWORD}
    )
    assert response.status_code == 403 and response.json()["code"] == "account_disabled"


def test_developers_cannot_call_admin_routes(platform: Platform, make: Factory) -> None:
    developer = make.developer()
    personal = developer.client.post("/me/keys", json={"name": "cli"}).json()["key"]
    with_key = make.client(Authorization=f"Bearer {personal}")
    for client in (developer.client, with_key):
        for method, path in (
            ("GET", "/admin/users"),
            ("POST", "/admin/users"),
            ("PATCH", f"/admin/users/{developer.user_id}"),
            ("GET", "/admin/audit"),
            ("GET", "/admin/usage/top"),
            ("POST", "/plans"),
            ("PATCH", "/plans/free"),
            ("DELETE", "/plans/free"),
            ("GET", "/models"),
            ("POST", "/models"),
        ):
            response = client.request(method, path, json={})
            assert response.status_code == 403, (method, path, response.text)
            assert response.json()["code"] == "admin_required"


@pytest.mark.parametrize(
    "body",
    [
        {"username": "ab", "email": "a@b.co", "password": PASSWORD},
        {"username": "good-name", "email": "not-an-email", "password": PASSWORD},
        {"username": "good-name", "email": "a@b.co", "password": "short"},
        {"username": "good-name", "email": "a@b.co", "password": "x" * 300},
        {"username": "good-name", "email": "a@b.co", "password": PASSWORD, "role": "admin"},
        {"username": "bad name!", "email": "a@b.co", "password": PASSWORD},
    ],
)
def test_bad_signups_are_422(platform: Platform, body: dict[str, str]) -> None:
    response = platform.anonymous.post("/auth/signup", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_request"


@pytest.mark.parametrize(
    "cookie", [b"garbage", b"", b"a.b.c", b"x" * 4000, "\u00e9t\u00e9".encode(), b"\xff\xfe"]
)
def test_forged_session_cookies_are_401(make: Factory, cookie: bytes) -> None:
    response = make.client().get("/me", headers={"Cookie": b"openmaas_session=" + cookie})
    assert response.status_code == 401


def test_signup_modes(tmp_path_factory: pytest.TempPathFactory) -> None:
    for mode, status in (("approval", 202), ("closed", 403)):
        settings = make_settings(tmp_path_factory.mktemp(mode), signup=mode)
        with running(create_app(settings)) as server, httpx.Client(base_url=server.url) as c:
            response = _signup(c, "someone")
            assert response.status_code == status, response.text
            if mode == "closed":
                assert response.json()["code"] == "signup_closed"
                continue
            assert response.json()["pending_approval"] is True
            login = c.post("/auth/login", json={"username": "someone", "password": PASSWORD})
            assert login.status_code == 403 and login.json()["code"] == "account_pending"
            admin = {"Authorization": f"Bearer {settings.admin_key.get_secret_value()}"}  # type: ignore[union-attr]
            users = c.get("/admin/users", headers=admin).json()["users"]
            user_id = next(u["id"] for u in users if u["username"] == "someone")
            approve = c.patch(f"/admin/users/{user_id}", json={"approved": True}, headers=admin)
            assert approve.status_code == 200
            login = c.post("/auth/login", json={"username": "someone", "password": PASSWORD})
            assert login.status_code == 200

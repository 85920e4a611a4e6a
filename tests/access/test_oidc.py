"""Single sign-on against a real OpenID Connect provider running on loopback."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from joserfc.jwk import RSAKey

from openmaas.app import create_app
from tests.access.oidc_provider import CLIENT_ID, CLIENT_SECRET, Provider
from tests.accounts import PASSWORD
from tests.conftest import ADMIN_KEY, make_settings
from tests.servers import ServerThread, running


@dataclass
class SSO:
    provider: Provider
    url: str


@pytest.fixture(scope="module")
def sso(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSO]:
    provider = Provider()
    idp = ServerThread(provider.app())
    provider.issuer = idp.url
    idp.start()
    try:
        settings = make_settings(
            tmp_path_factory.mktemp("sso"),
            oidc_issuer=idp.url,
            oidc_client_id=CLIENT_ID,
            oidc_client_secret=CLIENT_SECRET,
        )
        with running(create_app(settings)) as server:
            yield SSO(provider, server.url)
    finally:
        idp.stop()


def _sign_in(sso: SSO, client: httpx.Client, **claims: object) -> httpx.Response:
    sso.provider.user = {"sub": secrets.token_hex(8), **claims}
    start = client.get("/auth/oidc/login", params={"next": "/me"})
    assert start.status_code == 302, start.text
    assert start.headers["location"].startswith(sso.provider.issuer + "/authorize?")
    at_provider = httpx.get(start.headers["location"])
    assert at_provider.status_code == 302
    return client.get(at_provider.headers["location"])


def test_sign_in_creates_then_recognises_the_user(sso: SSO) -> None:
    with httpx.Client(base_url=sso.url) as client:
        done = _sign_in(
            sso, client, preferred_username="carol", email="carol@corp.example", email_verified=True
        )
        assert done.status_code == 303, done.text
        assert done.headers["location"] == "/me"
        me = client.get("/me").json()
        assert me["username"] == "carol" and me["sso"] is True and me["role"] == "developer"
        subject = sso.provider.user["sub"]
    with httpx.Client(base_url=sso.url) as client:
        sso.provider.user = {"sub": subject, "preferred_username": "renamed"}
        start = client.get("/auth/oidc/login")
        callback = httpx.get(start.headers["location"]).headers["location"]
        assert client.get(callback).status_code == 303
        assert client.get("/me").json()["id"] == me["id"]


def test_verified_email_links_an_existing_account(sso: SSO) -> None:
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    created = httpx.post(
        f"{sso.url}/admin/users",
        headers=admin,
        json={"username": "dave", "email": "dave@corp.example", "password": PASSWORD},
    ).json()
    with httpx.Client(base_url=sso.url) as client:
        done = _sign_in(
            sso, client, preferred_username="d", email="dave@corp.example", email_verified=True
        )
        assert done.status_code == 303
        assert client.get("/me").json()["id"] == created["id"]
    with httpx.Client(base_url=sso.url) as client:
        # An unverified address links nothing: a new account is made (or refused).
        done = _sign_in(sso, client, preferred_username="dave", email="dave@corp.example")
        assert done.status_code in (303, 409)
        if done.status_code == 303:
            assert client.get("/me").json()["id"] != created["id"]


def test_forged_tokens_and_states_are_refused(sso: SSO) -> None:
    sso.provider.sign_with = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    try:
        with httpx.Client(base_url=sso.url) as client:
            done = _sign_in(sso, client, preferred_username="mallory")
            assert done.status_code == 401 and done.json()["code"] == "sso_invalid_token"
            assert client.get("/me").status_code == 401
    finally:
        sso.provider.sign_with = None
    with httpx.Client(base_url=sso.url) as client:
        start = client.get("/auth/oidc/login")
        callback = httpx.get(start.headers["location"]).headers["location"]
        tampered = callback.replace("state=", "state=x")
        assert client.get(tampered).json()["code"] == "sso_state"
        client.cookies.clear()
        assert client.get(callback).json()["code"] == "sso_state"
        assert client.get("/auth/oidc/callback?error=access_denied").status_code == 401
        assert client.get("/auth/oidc/callback").status_code == 401


def test_open_redirects_are_not_followed(sso: SSO) -> None:
    with httpx.Client(base_url=sso.url) as client:
        sso.provider.user = {"sub": secrets.token_hex(8), "preferred_username": "eve"}
        start = client.get("/auth/oidc/login", params={"next": "//evil.example/x"})
        callback = httpx.get(start.headers["location"]).headers["location"]
        assert client.get(callback).headers["location"] == "/"


def test_without_configuration_sso_is_404(tmp_path_factory: pytest.TempPathFactory) -> None:
    settings = make_settings(tmp_path_factory.mktemp("nosso"))
    with running(create_app(settings)) as server:
        response = httpx.get(f"{server.url}/auth/oidc/login")
        assert response.status_code == 404 and response.json()["code"] == "sso_disabled"

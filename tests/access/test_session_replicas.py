"""Two replicas of one platform: a session begun on one is honoured by the other at once.

Each replica keeps users in a snapshot it refreshes by polling; here the poll is a
minute apart, so only the lookup a signed cookie of an unknown user triggers can make
the second replica know the user who was created and logged in on the first.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from openmaas.access.sessions import SESSION_COOKIE
from openmaas.app import create_app
from tests.conftest import ADMIN_KEY, make_settings
from tests.servers import running

PASSWORD = "correct horse battery"


def test_a_new_users_session_works_at_once_on_the_other_replica(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = create_app(make_settings(data, access_refresh_seconds=60.0))
    with running(first) as one:
        second = create_app(make_settings(data, access_refresh_seconds=60.0))
        with running(second) as other:
            admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
            user = {"username": "newcomer", "email": "new@example.org", "password": PASSWORD}
            created = httpx.post(f"{one.url}/admin/users", json=user, headers=admin)
            assert created.status_code == 201, created.text
            login = httpx.post(
                f"{one.url}/auth/login", json={"username": "newcomer", "password": PASSWORD}
            )
            assert login.status_code == 200, login.text
            cookie = {SESSION_COOKIE: login.cookies[SESSION_COOKIE]}
            session = httpx.get(f"{other.url}/auth/session", cookies=cookie)
            assert session.status_code == 200, session.text
            assert session.json()["user"]["username"] == "newcomer"
            page = httpx.get(f"{other.url}/portal/applications", cookies=cookie)
            assert page.status_code == 200, page.headers.get("location")
            assert "newcomer" in page.text
            # A cookie nobody signed is still nobody, and costs no lookup of its user.
            forged = httpx.get(f"{other.url}/auth/session", cookies={SESSION_COOKIE: "x.y.z"})
            assert forged.status_code == 401

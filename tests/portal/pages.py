"""A browser-less visitor of the web pages: logs in through the form, posts with CSRF."""

from __future__ import annotations

import re
import secrets
from typing import Any

import httpx

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(page: httpx.Response) -> str:
    found = _CSRF.search(page.text)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def visitor(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=60, follow_redirects=False)


def log_in(client: httpx.Client, username: str, password: str) -> httpx.Response:
    """Through the login form, with the CSRF token the form's page carries."""
    token = csrf_of(client.get("/portal/login"))
    fields = {"username": username, "password": password, "csrf_token": token}
    return client.post("/portal/login", data=fields)


def submit(client: httpx.Client, page: str, target: str, **fields: Any) -> httpx.Response:
    """Post a form of ``page`` to ``target`` with the token that page carries."""
    token = csrf_of(client.get(page))
    return client.post(target, data={"csrf_token": token, **fields})


def admin_visitor(
    url: str, admin: httpx.Client, password: str, prefix: str = "admin"
) -> httpx.Client:
    """A browser-like client logged in to the console as a new admin that ``admin`` made."""
    username = f"{prefix}{secrets.token_hex(3)}"
    body = {
        "username": username,
        "email": f"{username}@example.org",
        "password": password,
        "role": "admin",
    }
    created = admin.post("/admin/users", json=body)
    assert created.status_code == 201, created.text
    client = visitor(url)
    assert log_in(client, username, password).status_code == 303
    return client

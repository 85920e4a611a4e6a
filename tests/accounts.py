"""Building accounts, plans, applications and keys over HTTP, as users would."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import httpx

PASSWORD = "correct horse battery"


@dataclass
class Developer:
    username: str
    password: str
    user_id: int
    client: httpx.Client  # logged in: session cookie and CSRF header set

    def application(self, plan: str, name: str | None = None) -> dict[str, Any]:
        body = {"name": name or f"app-{secrets.token_hex(3)}", "plan": plan}
        response = self.client.post("/applications", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def key(self, application_id: int, **fields: Any) -> str:
        response = self.client.post(f"/applications/{application_id}/keys", json=fields)
        assert response.status_code == 201, response.text
        return str(response.json()["key"])


class Factory:
    def __init__(self, url: str, admin: httpx.Client) -> None:
        self.url = url
        self.admin = admin
        self.clients: list[httpx.Client] = []

    def client(self, **headers: str) -> httpx.Client:
        client = httpx.Client(base_url=self.url, timeout=60, headers=headers)
        self.clients.append(client)
        return client

    def login(self, username: str, password: str = PASSWORD) -> httpx.Client:
        client = self.client()
        response = client.post("/auth/login", json={"username": username, "password": password})
        assert response.status_code == 200, response.text
        client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
        return client

    def developer(self, prefix: str = "dev") -> Developer:
        username = f"{prefix}{secrets.token_hex(4)}"
        response = self.admin.post(
            "/admin/users",
            json={"username": username, "email": f"{username}@example.org", "password": PASSWORD},
        )
        assert response.status_code == 201, response.text
        return Developer(username, PASSWORD, response.json()["id"], self.login(username))

    def plan(self, **fields: Any) -> str:
        name = f"plan-{secrets.token_hex(4)}"
        response = self.admin.post("/plans", json={"name": name, **fields})
        assert response.status_code == 201, response.text
        return name

    def key_for(self, plan: str | None = None, **plan_fields: Any) -> tuple[Developer, int, str]:
        """A new developer with one application on a (new) plan, and its key."""
        developer = self.developer()
        app = developer.application(plan or self.plan(**plan_fields))
        return developer, app["id"], developer.key(app["id"])

    def close(self) -> None:
        for client in self.clients:
            client.close()


ROW = [0.5, 0.8, 0.2]


def infer(client: httpx.Client, key: str | None, model: str) -> httpx.Response:
    """One prediction of a deployed classifier (``classifiers`` fixture) through /predict."""
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return client.post("/predict", json={"model_name": model, "input": ROW}, headers=headers)


def await_key_everywhere(urls: list[str], key: str) -> None:
    """Until every server (each worker: a new connection each time) knows a new key.

    Listing models needs the key and spends none of its budget."""
    deadline = time.monotonic() + 30
    known = 0
    while known < 20:
        for url in urls:
            auth = {"Authorization": f"Bearer {key}"}
            response = httpx.get(f"{url}/v1/models", headers=auth, timeout=60)
            known = known + 1 if response.status_code == 200 else 0
            assert response.status_code in (200, 401), response.text
        assert time.monotonic() < deadline, "a new key did not reach every worker in 30 s"

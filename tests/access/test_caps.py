"""Per-developer caps on applications and keys, over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from openmaas.app import create_app
from tests.accounts import Factory
from tests.conftest import ADMIN_KEY, make_settings
from tests.servers import running


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Factory]:
    settings = make_settings(tmp_path, max_applications_per_developer=2, max_keys_per_developer=3)
    with (
        running(create_app(settings)) as server,
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60
        ) as admin,
    ):
        factory = Factory(server.url, admin)
        yield factory
        factory.close()


def test_applications_per_developer_are_capped(make: Factory) -> None:
    developer = make.developer()
    plan = make.plan()
    first = developer.application(plan)
    developer.application(plan)
    refused = developer.client.post("/applications", json={"name": "third", "plan": plan})
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "too_many_applications"
    assert "2 applications" in refused.json()["message"]
    assert developer.client.delete(f"/applications/{first['id']}").status_code in (200, 204)
    developer.application(plan)  # room again
    # Another developer has caps of their own; admins have none.
    make.developer().application(plan)


def test_keys_per_developer_are_capped_personal_and_applications_together(
    make: Factory,
) -> None:
    developer = make.developer()
    app = developer.application(make.plan())
    developer.key(app["id"])
    developer.key(app["id"])
    personal = developer.client.post("/me/keys", json={"name": "mine"})
    assert personal.status_code == 201, personal.text
    refused = developer.client.post(f"/applications/{app['id']}/keys", json={})
    assert refused.status_code == 409 and refused.json()["code"] == "too_many_keys"
    assert developer.client.post("/me/keys", json={"name": "more"}).status_code == 409
    # A revoked key leaves room for a new one.
    keys = developer.client.get(f"/applications/{app['id']}/keys").json()["keys"]
    revoked = developer.client.delete(f"/applications/{app['id']}/keys/{keys[0]['id']}")
    assert revoked.status_code == 200
    developer.key(app["id"])

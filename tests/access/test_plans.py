"""Plans over HTTP: admins write them, everyone reads them, bad input is 422."""

from __future__ import annotations

import pytest

from tests.accounts import Factory
from tests.conftest import Platform


def test_plan_life_cycle(platform: Platform, make: Factory) -> None:
    name = make.plan(models=["llama-*"], requests_per_minute=10, price_per_request=0.002)
    public = platform.anonymous.get(f"/plans/{name}").json()
    assert public["models"] == ["llama-*"] and public["requests_per_minute"] == 10
    assert name in {p["name"] for p in platform.anonymous.get("/plans").json()["plans"]}

    changed = platform.admin.patch(
        f"/plans/{name}", json={"requests_per_minute": None, "tokens_per_day": 9}
    )
    assert changed.status_code == 200
    assert changed.json()["requests_per_minute"] is None and changed.json()["tokens_per_day"] == 9
    assert changed.json()["price_per_request"] == "0.002"  # untouched; exact, as a string

    developer = make.developer()
    developer.application(name)
    busy = platform.admin.delete(f"/plans/{name}")
    assert busy.status_code == 409 and busy.json()["code"] == "plan_in_use"
    again = platform.admin.post("/plans", json={"name": name})
    assert again.status_code == 409 and again.json()["code"] == "plan_exists"

    spare = make.plan()
    assert platform.admin.delete(f"/plans/{spare}").status_code == 204
    assert platform.admin.get(f"/plans/{spare}").status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"name": "Upper"},
        {"name": "x" * 65},
        {"name": "ok", "requests_per_second": 0},
        {"name": "ok", "requests_per_day": -5},
        {"name": "ok", "requests_per_day": 10**20},
        {"name": "ok", "price_per_request": -1},
        {"name": "ok", "price_per_request": "NaN"},
        {"name": "ok", "models": "llama"},
        {"name": "ok", "models": [""]},
        {"name": "ok", "unknown": 1},
    ],
)
def test_bad_plans_are_422(platform: Platform, body: dict) -> None:
    response = platform.admin.post("/plans", json=body)
    assert response.status_code == 422, response.text


def test_plan_changes_by_name_only(platform: Platform) -> None:
    assert platform.admin.patch("/plans/NOT VALID", json={}).status_code == 422
    assert platform.admin.patch("/plans/nothing-here", json={}).status_code == 404
    assert platform.admin.patch("/plans/nothing-here", json={"name": "x"}).status_code == 422

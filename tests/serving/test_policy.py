"""Keys, plans, limits and metering on the real inference routes (/predict and /v2)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.accounts import Factory
from tests.conftest import Platform
from tests.models import classifier
from tests.serving.helpers import deploy, register_estimator

ROW = [0.5, 0.8, 0.2]
V2_BODY = {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP64", "data": ROW}]}


def _predict(client: httpx.Client, key: str, model: str) -> httpx.Response:
    return client.post(
        "/predict",
        json={"model_name": model, "input": ROW},
        headers={"Authorization": f"Bearer {key}"},
    )


def test_application_keys_plans_and_limits_on_inference(
    platform: Platform, make: Factory, unique_name: str, tmp_path: Path
) -> None:
    register_estimator(platform.admin, unique_name, classifier(), tmp_path)
    deploy(platform.admin, unique_name, endpoint_name=f"{unique_name}_ep")
    other = f"{unique_name}_other"
    register_estimator(platform.admin, other, classifier(seed=1), tmp_path)
    deploy(platform.admin, other)

    plan = make.plan(models=[unique_name], requests_per_minute=5)
    developer, _application_id, key = make.key_for(plan)
    client = make.client()

    ok = _predict(client, key, unique_name)
    assert ok.status_code == 200, ok.text
    assert ok.headers["X-RateLimit-Limit"] == "5"
    assert ok.headers["X-RateLimit-Remaining"] == "4"
    by_path = client.post(
        f"/predict/{unique_name}_ep", json={"input": ROW}, headers={"X-API-Key": key}
    )
    assert by_path.status_code == 200
    v2 = client.post(
        f"/v2/models/{unique_name}/infer", json=V2_BODY, headers={"Authorization": f"Bearer {key}"}
    )
    assert v2.status_code == 200, v2.text

    outside = _predict(client, key, other)
    assert outside.status_code == 403 and outside.json()["code"]
    v2_outside = client.post(
        f"/v2/models/{other}/infer", json=V2_BODY, headers={"Authorization": f"Bearer {key}"}
    )
    assert v2_outside.status_code == 403 and set(v2_outside.json()) == {"error"}

    assert _predict(client, key, unique_name).status_code == 200
    assert _predict(client, key, unique_name).status_code == 200
    limited = _predict(client, key, unique_name)
    assert limited.status_code == 429, limited.text
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.headers["X-RateLimit-Remaining"] == "0"

    # Every request above is metered, the refused ones too.
    deadline = time.monotonic() + 15
    while True:
        rows = developer.client.get("/usage", params={"group_by": "model,status"}).json()["usage"]
        counts = {(r["model"], r["status"]): r["requests"] for r in rows}
        if sum(counts.values()) >= 8 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert counts.get((unique_name, 200)) == 5, counts
    assert counts.get((other, 403)) == 2, counts
    assert counts.get((unique_name, 429)) == 1, counts


def test_revoked_key_stops_working(
    platform: Platform, make: Factory, unique_name: str, tmp_path: Path
) -> None:
    register_estimator(platform.admin, unique_name, classifier(), tmp_path)
    deploy(platform.admin, unique_name)
    developer, application_id, key = make.key_for(make.plan())
    client = make.client()
    assert _predict(client, key, unique_name).status_code == 200
    keys = developer.client.get(f"/applications/{application_id}/keys").json()
    key_id = (keys["keys"] if isinstance(keys, dict) else keys)[0]["id"]
    revoked = developer.client.delete(f"/applications/{application_id}/keys/{key_id}")
    assert revoked.status_code in (200, 204), revoked.text
    deadline = time.monotonic() + 2.5
    while _predict(client, key, unique_name).status_code != 401:
        assert time.monotonic() < deadline, "the revoked key still works after 2 s"
        time.sleep(0.1)
    for bad in ("Bearer nonsense", "Basic %%%", "Bearer " + key[:-2]):
        response = client.post(
            "/predict",
            json={"model_name": unique_name, "input": ROW},
            headers={"Authorization": bad},
        )
        assert response.status_code == 401, (bad, response.text)

"""ModelRoute (seed 003) over HTTP: matching, weights, retries, timeouts, fallback, canary."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.accounts import Factory
from tests.conftest import Platform
from tests.routing.documents import ref, to
from tests.routing.documents import route as route_doc
from tests.serving.helpers import deploy, register

MODEL = """
import time
from pathlib import Path

import numpy as np


class Answer:
    signature = {{
        "inputs": [{{"name": "x", "datatype": "FP64", "shape": [-1, 1]}}],
        "outputs": [{{"name": "answer", "datatype": "FP64", "shape": [-1]}}],
    }}

    def predict(self, x):
        if Path({fail!r}).exists():
            raise RuntimeError("failing on command")
        time.sleep({delay})
        return np.full(len(x), {value}.0)
"""

Deployer = Callable[..., str]


@pytest.fixture
def deployed(platform: Platform, unique_name: str, tmp_path: Path) -> Deployer:
    """Deploys a model answering ``value``; it raises while ``<tmp>/<name>.fail`` exists."""

    def make(suffix: str, value: int, delay: float = 0.0) -> str:
        name = f"{unique_name}_{suffix}"
        source = tmp_path / f"{name}.py"
        fail = tmp_path / f"{name}.fail"
        source.write_text(MODEL.format(fail=str(fail), delay=delay, value=value))
        register(platform.admin, name, source, allow_code="true")
        deploy(platform.admin, name, endpoint_name=name)
        return name

    return make


def _apply(platform: Platform, document: dict[str, Any]) -> dict[str, Any]:
    response = platform.admin.post("/routes", json=document)
    assert response.status_code == 201, response.text
    return response.json()


def _ask(client: httpx.Client, route: str, **kwargs: Any) -> httpx.Response:
    return client.post("/predict", json={"model_name": route, "input": [[1.0]]}, **kwargs)


def _answer(response: httpx.Response) -> float:
    assert response.status_code == 200, response.text
    return float(response.json()["prediction"][0])


def test_header_routing_with_fallback_from_yaml(
    platform: Platform, deployed: Deployer, unique_name: str
):
    premium, standard, default = deployed("premium", 1), deployed("standard", 2), deployed("d", 3)
    route = f"{unique_name}-hdr"
    document = route_doc(
        route,
        [
            {"match": {"headers": {"user-type": "premium"}}, **to(premium, timeout="60s")},
            {"match": {"headers": {"user-type": "standard"}}, **to(standard, retries=2)},
        ],
        fallback=ref(default),
    )
    created = platform.admin.post(
        "/routes",
        content=yaml.safe_dump(document),
        headers={"Content-Type": "application/yaml"},
    )
    assert created.status_code == 201, created.text
    assert created.json()["status"]["phase"] == "Active"
    assert created.json()["status"]["activeRoutes"] == 2

    premium_answer = _ask(platform.admin, route, headers={"User-Type": "premium"})
    assert _answer(premium_answer) == 1
    assert premium_answer.headers["X-OpenMaaS-Route-Destination"] == premium
    assert _answer(_ask(platform.admin, route, headers={"user-type": "standard"})) == 2
    assert _answer(_ask(platform.admin, route, headers={"user-type": "other"})) == 3
    assert _answer(_ask(platform.admin, route)) == 3
    # Every protocol takes the route name where a model name goes.
    assert _answer(platform.admin.post(f"/predict/{route}", json={"input": [[1.0]]})) == 3
    v2 = platform.admin.post(
        f"/v2/models/{route}/infer",
        json={"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP64", "data": [1.0]}]},
        headers={"user-type": "premium"},
    )
    assert v2.status_code == 200 and v2.json()["outputs"][0]["data"] == [1.0]


def test_query_and_path_matching_and_no_match(
    platform: Platform, deployed: Deployer, unique_name: str
):
    fast, accurate = deployed("fast", 10), deployed("accurate", 20)
    route = f"{unique_name}-q"
    _apply(
        platform,
        route_doc(
            route,
            [
                {"match": {"queryParams": {"model": "fast"}}, **to(fast)},
                {"match": {"path": "/v2/models/*"}, **to(accurate)},
            ],
        ),
    )
    assert _answer(_ask(platform.admin, route, params={"model": "fast"})) == 10
    v2 = platform.admin.post(
        f"/v2/models/{route}/infer",
        json={"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP64", "data": [1.0]}]},
    )
    assert v2.status_code == 200 and v2.json()["outputs"][0]["data"] == [20.0]
    missed = _ask(platform.admin, route, params={"model": "slow"})
    assert missed.status_code == 404 and missed.json()["code"] == "route_no_match"


def test_weights_split_the_matching_traffic(
    platform: Platform, deployed: Deployer, unique_name: str
):
    v1, v2 = deployed("v1", 1), deployed("v2", 2)
    route = f"{unique_name}-ab"
    rules = [{"match": {}, **to(v1), "weight": 80}, {"match": {}, **to(v2), "weight": 20}]
    _apply(platform, route_doc(route, rules))
    seen = Counter(_answer(_ask(platform.admin, route)) for _ in range(500))
    # 100 expected for v2; the binomial's standard deviation is ~9.
    assert 55 <= seen[2.0] <= 145 and seen[1.0] + seen[2.0] == 500, seen


def test_weight_under_100_leaves_the_rest_to_the_fallback(
    platform: Platform, deployed: Deployer, unique_name: str
):
    experiment, default = deployed("exp", 5), deployed("global", 0)
    route = f"{unique_name}-exp"
    rules = [{"match": {"headers": {"experiment": "new"}}, **to(experiment), "weight": 30}]
    _apply(platform, route_doc(route, rules, fallback=ref(default)))
    headers = {"experiment": "new"}
    seen = Counter(_answer(_ask(platform.admin, route, headers=headers)) for _ in range(300))
    assert 45 <= seen[5.0] <= 135 and seen[0.0] == 300 - seen[5.0], seen


def test_retries_then_fallback_and_no_retry_on_bad_input(
    platform: Platform, deployed: Deployer, unique_name: str, tmp_path: Path
):
    flaky, default = deployed("flaky", 1), deployed("safe", 9)
    (tmp_path / f"{flaky}.fail").touch()
    route = f"{unique_name}-retry"
    _apply(
        platform, route_doc(route, [{"match": {}, **to(flaky, retries=2)}], fallback=ref(default))
    )
    answer = _ask(platform.admin, route)
    assert _answer(answer) == 9 and answer.headers["X-OpenMaaS-Route-Destination"] == default
    status = platform.admin.get(f"/routes/{route}").json()["status"]
    counts = {d["name"]: d for d in status["destinations"]}
    assert counts[flaky]["requests"] == 3 and counts[flaky]["failures"] == 3
    assert counts[default]["requests"] == 1 and counts[default]["failures"] == 0

    (tmp_path / f"{flaky}.fail").unlink()
    assert _answer(_ask(platform.admin, route)) == 1
    wrong = platform.admin.post("/predict", json={"model_name": route, "input": [["text"]]})
    assert wrong.status_code == 400
    after = platform.admin.get(f"/routes/{route}").json()["status"]["destinations"]
    assert {d["name"]: d["requests"] for d in after}[default] == 1  # not sent to the fallback


def test_timeout_goes_to_the_fallback_or_answers_504(
    platform: Platform, deployed: Deployer, unique_name: str
):
    slow, quick = deployed("slow", 1, delay=1.5), deployed("quick", 2)
    guarded, bare = f"{unique_name}-to", f"{unique_name}-to-bare"
    _apply(
        platform,
        route_doc(guarded, [{"match": {}, **to(slow, timeout="200ms")}], fallback=ref(quick)),
    )
    _apply(platform, route_doc(bare, [{"match": {}, **to(slow, timeout="200ms")}]))
    started = time.monotonic()
    assert _answer(_ask(platform.admin, guarded)) == 2
    timed_out = _ask(platform.admin, bare)
    assert timed_out.status_code == 504 and timed_out.json()["code"] == "timeout"
    assert time.monotonic() - started < 1.4  # neither waited for the slow model


def _canary(name: str, stable: str, canary: str, share: int, **analysis: Any) -> dict[str, Any]:
    return route_doc(
        name,
        [{"match": {}, **to(stable), "weight": 100 - share}, {"match": {}, **to(canary)}],
        canary={
            "enabled": True,
            "trafficSplit": {"stable": 100 - share, "canary": share},
            "analysis": {"threshold": 90, "interval": "1s", "minRequests": 5, **analysis},
        },
    )


def _drive_until(platform: Platform, route: str, state: str, seconds: float = 20) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(20):
            _ask(platform.admin, route)
        described = platform.admin.get(f"/routes/{route}").json()
        if described["status"]["canary"]["state"] == state:
            return described
    raise AssertionError(f"the canary never reached {state}: {described}")


def test_failing_canary_is_rolled_back(
    platform: Platform, deployed: Deployer, unique_name: str, tmp_path: Path
):
    stable, canary = deployed("stable", 1), deployed("canary", 2)
    (tmp_path / f"{canary}.fail").touch()
    route = f"{unique_name}-canary-bad"
    created = _apply(platform, _canary(route, stable, canary, 30))
    assert created["status"]["canary"] == {
        "state": "progressing",
        "trafficSplit": {"stable": 70, "canary": 30},
    }
    described = _drive_until(platform, route, "rolled_back")
    assert described["status"]["canary"]["trafficSplit"] == {"stable": 100, "canary": 0}
    last = described["status"]["conditions"][-1]
    assert last["type"] == "CanaryRolledBack" and "threshold 90%" in last["message"]
    assert {_answer(_ask(platform.admin, route)) for _ in range(30)} == {1.0}


def test_healthy_canary_is_promoted_step_by_step(
    platform: Platform, deployed: Deployer, unique_name: str
):
    stable, canary = deployed("stable", 1), deployed("canary", 2)
    route = f"{unique_name}-canary-good"
    _apply(platform, _canary(route, stable, canary, 40))
    described = _drive_until(platform, route, "promoted", seconds=30)
    kinds = [c["type"] for c in described["status"]["conditions"]]
    assert kinds[-2:] == ["CanaryProgressing", "CanaryPromoted"], kinds
    assert "40% -> 80%" in described["status"]["conditions"][-2]["message"]
    assert {_answer(_ask(platform.admin, route)) for _ in range(30)} == {2.0}


def test_management_errors(platform: Platform, deployed: Deployer, unique_name: str, make: Factory):
    target = deployed("t", 1)
    route = f"{unique_name}-m"
    bad_weight = route_doc(route, [{"match": {}, **to(target), "weight": 101}])
    refused = platform.admin.post("/routes", json=bad_weight)
    assert (
        refused.status_code == 422 and refused.json()["details"]["field"] == "spec.routes[0].weight"
    )
    bad_duration = route_doc(route, [{"match": {}, **to(target, timeout="soon")}])
    assert platform.admin.post("/routes", json=bad_duration).json()["details"]["field"] == (
        "spec.routes[0].timeout"
    )
    assert platform.admin.post("/routes", json=route_doc(route, [])).status_code == 422
    garbage = platform.admin.post(
        "/routes", content=b"spec: [unclosed", headers={"Content-Type": "application/yaml"}
    )
    assert garbage.status_code == 400 and garbage.json()["code"] == "invalid_yaml"
    taken = platform.admin.post("/routes", json=route_doc(target, [{"match": {}, **to(target)}]))
    assert taken.status_code == 409

    _apply(platform, route_doc(route, [{"match": {}, **to(target)}]))
    assert (
        platform.admin.post(
            "/routes", json=route_doc(route, [{"match": {}, **to(target)}])
        ).status_code
        == 409
    )
    developer = make.developer()
    assert developer.client.get("/routes").status_code == 403
    assert developer.client.post(
        "/routes", json=route_doc("x", [{"match": {}, **to(target)}])
    ).status_code in (403,)
    replaced = platform.admin.put(
        f"/routes/{route}", json=route_doc(route, [{"match": {}, **to(target), "retries": 1}])
    )
    assert replaced.status_code == 200 and replaced.json()["status"]["revision"] == 2
    assert route in {r["metadata"]["name"] for r in platform.admin.get("/routes").json()["routes"]}
    assert platform.admin.delete(f"/routes/{route}").status_code == 204
    assert platform.admin.get(f"/routes/{route}").status_code == 404
    assert _ask(platform.admin, route).status_code == 404


def test_the_plan_applies_to_the_route_name(
    platform: Platform, deployed: Deployer, unique_name: str, make: Factory
):
    target = deployed("planned", 4)
    route = f"{unique_name}-plan"
    _apply(platform, route_doc(route, [{"match": {}, **to(target)}]))
    _, _, key = make.key_for(models=[route])
    allowed = _ask(platform.anonymous, route, headers={"Authorization": f"Bearer {key}"})
    assert _answer(allowed) == 4
    _, _, other = make.key_for(models=[target])
    refused = _ask(platform.anonymous, route, headers={"Authorization": f"Bearer {other}"})
    assert refused.status_code == 403


def test_namespaces_scope_route_names(platform: Platform, deployed: Deployer, unique_name: str):
    first, second = deployed("team_a", 1), deployed("team_b", 2)
    route = f"{unique_name}-ns"
    for namespace, destination in (("team-a", first), ("team-b", second)):
        document = route_doc(route, [to(destination)])
        document["metadata"]["namespace"] = namespace
        assert _apply(platform, document)["metadata"]["namespace"] == namespace
    for namespace, value in (("team-a", 1), ("team-b", 2)):
        answer = _ask(platform.admin, route, headers={"X-OpenMaaS-Namespace": namespace})
        assert _answer(answer) == value
        shown = platform.admin.get(f"/routes/{route}", params={"namespace": namespace})
        assert shown.status_code == 200 and shown.json()["status"]["phase"] == "Active"
    # Without the header a request means the default namespace, where there is none.
    assert _ask(platform.admin, route).status_code == 404
    assert platform.admin.get(f"/routes/{route}").status_code == 404
    listed = platform.admin.get("/routes", params={"namespace": "team-a"}).json()["routes"]
    assert [r["metadata"]["name"] for r in listed] == [route]
    again = route_doc(route, [to(first)])
    again["metadata"]["namespace"] = "team-a"
    assert platform.admin.post("/routes", json=again).status_code == 409
    # A document without a namespace takes the one the request names.
    del again["metadata"]["namespace"]
    third = platform.admin.post("/routes", json=again, params={"namespace": "team-c"})
    assert third.status_code == 201 and third.json()["metadata"]["namespace"] == "team-c"
    replaced = platform.admin.put(
        f"/routes/{route}", json=route_doc(route, [to(second)]), params={"namespace": "team-c"}
    )
    assert replaced.status_code == 409  # the document says default, the request team-c
    deleted = platform.admin.delete(f"/routes/{route}", params={"namespace": "team-a"})
    assert deleted.status_code == 204
    assert (
        _ask(platform.admin, route, headers={"X-OpenMaaS-Namespace": "team-a"}).status_code == 404
    )
    assert _answer(_ask(platform.admin, route, headers={"X-OpenMaaS-Namespace": "team-b"})) == 2


def test_a_route_with_nothing_deployed_behind_it_is_failed(
    platform: Platform, deployed: Deployer, unique_name: str
):
    ghost = f"{unique_name}-nowhere"
    created = _apply(platform, route_doc(ghost, [to("not-deployed")], fallback=ref("nor-this")))
    status = created["status"]
    assert status["phase"] == "Failed" and status["activeRoutes"] == 0
    ready = status["conditions"][0]
    assert ready["type"] == "Ready" and ready["status"] == "False"
    assert ready["reason"] == "NoDestinationDeployed" and "not-deployed" in ready["message"]
    live = deployed("live", 4)
    route = f"{unique_name}-live"
    assert _apply(platform, route_doc(route, [to(live)]))["status"]["phase"] == "Active"
    undeployed = platform.admin.post("/deployments/undeploy", json={"endpoint_name": live})
    assert undeployed.status_code == 200, undeployed.text
    status = platform.admin.get(f"/routes/{route}").json()["status"]
    assert status["phase"] == "Failed"
    assert status["conditions"][0]["reason"] == "NoDestinationDeployed"

"""The Grafana dashboard in deploy/grafana asks only for metrics that /metrics exposes."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from tests.accounts import Factory
from tests.conftest import Platform
from tests.models import classifier
from tests.serving.helpers import deploy, register_estimator

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "openmaas.json"
_METRIC = re.compile(r"\b(openmaas_[a-z_]+)\b")


def _expressions(dashboard: dict) -> list[str]:
    found = []
    for panel in dashboard["panels"]:
        found += [target["expr"] for target in panel.get("targets", [])]
    found += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return found


def test_the_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    titles = [p["title"] for p in panels]
    for wanted in ("by model", "by plan", "Latency p95", "Tokens", "Error"):
        assert any(wanted in title for title in titles), wanted
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"]


def test_every_metric_it_asks_for_is_exposed(
    platform: Platform, make: Factory, unique_name: str, tmp_path: Path
) -> None:
    register_estimator(platform.admin, unique_name, classifier(), tmp_path)
    deploy(platform.admin, unique_name, endpoint_name=unique_name)
    plan = make.plan(models=[unique_name], requests_per_minute=100)
    _developer, _app, key = make.key_for(plan)
    headers = {"Authorization": f"Bearer {key}"}
    body = {"input": [0.1, 0.2, 0.3]}
    assert platform.anonymous.post(f"/predict/{unique_name}", json=body, headers=headers).is_success
    assert platform.anonymous.post("/predict/ghost", json=body, headers=headers).status_code == 404
    deadline = time.monotonic() + 10
    while True:
        exposed = platform.admin.get("/metrics").text
        line = f'openmaas_gateway_requests_total{{model="{unique_name}",plan="{plan}"'
        if line in exposed or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert line in exposed, exposed
    assert 'model="ghost"' not in exposed  # names nobody deployed are "other"
    # Every series a metric family declares, whether or not it has a sample yet.
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    names = set()
    for declared in re.findall(r"^# TYPE (openmaas_[a-z_]+) (\w+)$", exposed, re.M):
        name, kind = declared
        base = name.removesuffix("_total")
        names.update(base + suffix for suffix in suffixes.get(kind, ("",)))
    asked = {
        m
        for expression in _expressions(json.loads(DASHBOARD.read_text()))
        for m in _METRIC.findall(expression)
    }
    assert asked and not asked - names, sorted(asked - names)

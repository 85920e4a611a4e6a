"""``openmaas plans ...`` against a running server."""

from __future__ import annotations

import secrets
from pathlib import Path

import yaml
from typer.testing import CliRunner

from openmaas.cli.main import app
from tests.conftest import ADMIN_KEY, Platform

runner = CliRunner()


def _run(platform: Platform, *args: str):
    return runner.invoke(app, [*args, "--url", platform.url, "--key", ADMIN_KEY])


def test_apply_list_show_change_delete(platform: Platform, tmp_path: Path) -> None:
    name = f"cli-{secrets.token_hex(3)}"
    document = {
        "name": name,
        "requests_per_minute": 600,
        "rules": [
            {
                "models": ["llama-*"],
                "name": "llama",
                "requests_per_minute": 60,
                "output_tokens_per_minute": 5000,
                "price_per_1k_output_tokens": 1.5,
            },
        ],
    }
    file = tmp_path / "plan.yaml"
    file.write_text(yaml.safe_dump(document))
    created = _run(platform, "plans", "apply", "-f", str(file))
    assert created.exit_code == 0, created.output
    assert f"Created plan {name} (1 rules)" in created.output
    document["requests_per_minute"] = 700
    file.write_text(yaml.safe_dump(document))
    changed = _run(platform, "plans", "apply", "-f", str(file))
    assert changed.exit_code == 0 and f"Changed plan {name}" in changed.output
    assert platform.admin.get(f"/plans/{name}").json()["requests_per_minute"] == 700

    listed = _run(platform, "plans", "list")
    assert listed.exit_code == 0 and name in listed.output and "llama-*" in listed.output
    shown = yaml.safe_load(_run(platform, "plans", "show", name).output)
    # Prices are exact decimals, shown as strings.
    assert shown["rules"] == [{**document["rules"][0], "price_per_1k_output_tokens": "1.5"}]

    deleted = _run(platform, "plans", "delete", name)
    assert deleted.exit_code == 0
    missing = _run(platform, "plans", "show", name)
    assert missing.exit_code == 1 and "404" in missing.output


def test_a_bad_rule_is_reported(platform: Platform, tmp_path: Path) -> None:
    file = tmp_path / "bad.yaml"
    file.write_text(yaml.safe_dump({"name": f"bad-{secrets.token_hex(3)}", "rules": [{}]}))
    result = _run(platform, "plans", "apply", "-f", str(file))
    assert result.exit_code == 1 and "422" in result.output

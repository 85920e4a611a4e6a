"""Every command starts at once: parsing the command line imports no heavy module.

What a command imports is measured (``python -X importtime``), not timed: the HTTP client,
Rich, SQLAlchemy, the server and NumPy are imported by the command that runs, never to
read the command line or print its help.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = (
    "httpx",
    "rich",
    "sqlalchemy",
    "alembic",
    "uvicorn",
    "fastapi",
    "numpy",
    "torch",
    "yaml",
    "pydantic_settings",
    "openmaas.settings",
    "openmaas.client",
    "openmaas.platform",
    "openmaas.artifacts",
    "openmaas.store",
    "obstore",
    "opentelemetry",
)
COMMANDS = [
    [],
    ["serve"],
    ["health"],
    ["artifacts"],
    ["artifacts", "migrate"],
    ["deploy"],
    ["undeploy"],
    ["deployments"],
    ["db"],
    ["db", "upgrade"],
    ["models"],
    ["models", "list"],
    ["models", "show"],
    ["models", "register"],
    ["models", "delete"],
    ["routes"],
    ["routes", "apply"],
    ["routes", "list"],
    ["routes", "show"],
    ["routes", "delete"],
    ["plans"],
    ["plans", "apply"],
    ["plans", "list"],
    ["plans", "show"],
    ["plans", "delete"],
    ["invoices"],
    ["invoices", "list"],
    ["invoices", "show"],
    ["invoices", "close"],
    ["usage"],
    ["usage", "export"],
]


def _imported(arguments: list[str]) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "openmaas.cli", *arguments, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Usage:" in done.stdout
    return {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


@pytest.mark.parametrize("arguments", COMMANDS, ids=lambda a: " ".join(a) or "openmaas")
def test_reading_the_command_line_imports_nothing_heavy(arguments: list[str]) -> None:
    imported = _imported(arguments)
    assert "openmaas.cli.main" in imported
    heavy = sorted(m for m in imported if m.split(".")[0] in HEAVY or m in HEAVY)
    assert not heavy, heavy

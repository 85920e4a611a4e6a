"""Schemathesis over the whole API, on SQLite and on PostgreSQL: no 5xx, no surprise status.

A server of its own (its own database: the fuzzer creates and deletes things), with a
deployed model so that its operations (``/predict/{name}``, ``/v2/models/{name}/infer``)
are in the description the admin key reads. Every operation gets a bounded number of
examples, boundary values and random (valid and invalid) requests; the run fails on any
5xx (``not_a_server_error``) and on any status its operation does not declare
(``status_code_conformance``). A fixed seed keeps runs comparable; the time it takes is
bounded by ``--max-examples`` (and the run by a timeout).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from openmaas.app import create_app
from tests.conftest import ADMIN_KEY, make_settings
from tests.models import classifier
from tests.servers import postgres_database, running
from tests.serving.helpers import deploy, register_estimator

# Per database: about 30 s on a two-core machine, a minute or two when it is loaded.
MAX_EXAMPLES = 5
MAX_SECONDS = 300  # a run that takes longer has hung


def _fuzz(url: str, workdir: Path, *options: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json"]
    command += ["--header", f"Authorization: Bearer {ADMIN_KEY}"]
    command += ["--checks", "not_a_server_error,status_code_conformance"]
    # One worker: Python 3.11 before 3.11.8 can fail building ASTs in two threads at once
    # (gh-106905, "AST constructor recursion depth mismatch"), which Hypothesis does.
    command += ["--seed", "20261130", "--workers", "1", "--request-timeout", "30"]
    command += ["--suppress-health-check", "all", "--no-shrink", "--warnings", "off"]
    env = {**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_TELEMETRY": "false"}
    return subprocess.run(
        [*command, *options],
        capture_output=True,
        text=True,
        timeout=MAX_SECONDS,
        env=env,
        cwd=workdir,  # it keeps a cache of its own in the working directory
    )


# Valid and invalid requests alike (integers past their bounds, wrong types, missing
# fields, odd strings), a few per operation: enough to reach every route's edge, few
# enough to keep the run short. tests/api/test_bad_input.py has the known cases.
_OPTIONS = ("--phases", "examples,fuzzing", "--mode", "all", "--max-examples", str(MAX_EXAMPLES))


@pytest.mark.timeout(MAX_SECONDS + 120)
@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_no_request_answers_5xx_or_an_undeclared_status(database: str, tmp_path: Path) -> None:
    if database == "postgres":
        with postgres_database() as url:
            _run(tmp_path, url)
    else:
        _run(tmp_path, "")


def _run(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path / "data", database_url)
    with running(create_app(settings)) as server:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as admin:
            register_estimator(admin, "fuzzed", classifier(), tmp_path)
            deploy(admin, "fuzzed", endpoint_name="fuzzed")
        done = _fuzz(server.url, tmp_path, *_OPTIONS)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-20000:]
    assert " generated, " in output, output[-5000:]

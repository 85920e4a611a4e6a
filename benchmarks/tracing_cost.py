"""What OpenTelemetry tracing costs the hot path: off, on, and the code before it existed.

Three OpenMaaS servers run at once, each serving binary_classifier over V2: this checkout
with tracing off (no ``OPENMAAS_OTEL_ENDPOINT``), the same with tracing on (spans batched
to a loopback sink that accepts OTLP and drops it), and the code of ``--baseline`` (a git
revision from before tracing, unpacked to a temporary directory and run with the same
interpreter). Rounds interleave the rows, so drifting background load hits all alike; the
table keeps each row's median round.

Run from the repository root: ``.venv/bin/python -m benchmarks.tracing_cost --baseline REV``.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import uvicorn
from packaging.requirements import Requirement

from benchmarks.loadgen import free_port, median_table, serve_openmaas, wrk
from benchmarks.v2_sklearn import AUTH, BODY, provision
from openmaas.demo.training import train_binary_classifier


async def _sink(scope: Any, receive: Any, send: Any) -> None:
    """An OTLP/HTTP collector that accepts every batch and keeps nothing."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def start(
    directory: Path, extra_env: dict[str, str], pythonpath: str | None = None
) -> tuple[subprocess.Popen, str]:
    return serve_openmaas(directory, extra_env, pythonpath=pythonpath)


def unpack(revision: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "archive", revision, "src"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def missing_dependencies(revision: str, into: Path) -> Path:
    """Install beside the baseline what its pyproject needs and this environment lacks.

    Older code used libraries since dropped (the ``limits`` package before the limiter
    was rewritten); without them its server never starts. They go to a directory of
    their own on the baseline's ``PYTHONPATH``, never into this environment.
    """
    pyproject = subprocess.run(
        ["git", "show", f"{revision}:pyproject.toml"], capture_output=True, check=True
    ).stdout
    needed = []
    for line in tomllib.loads(pyproject.decode())["project"]["dependencies"]:
        requirement = Requirement(line)
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            needed.append(line)
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            needed.append(line)
    if needed:
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(into)]
        subprocess.run([*pip, *needed], check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", required=True, help="git revision from before tracing")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="openmaas-tracing-"))
    model, _ = train_binary_classifier(work)
    sink_port = free_port()
    sink = uvicorn.Server(
        uvicorn.Config(_sink, host="127.0.0.1", port=sink_port, log_level="error", lifespan="off")
    )
    threading.Thread(target=sink.run, daemon=True).start()
    baseline_src = unpack(args.baseline, work / "baseline")
    baseline_deps = missing_dependencies(args.baseline, work / "baseline-deps")
    baseline_path = f"{baseline_src}{os.pathsep}{baseline_deps}"
    servers = {
        "before tracing existed": start(work / "base", {}, baseline_path),
        "tracing off": start(work / "off", {}),
        "tracing on": start(
            work / "on", {"OPENMAAS_OTEL_ENDPOINT": f"http://127.0.0.1:{sink_port}"}
        ),
    }
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    try:
        for _, url in servers.values():
            provision(url, model)
        for _ in range(args.rounds):
            for concurrency in (1, 32):
                for name, (_, url) in servers.items():
                    target = f"{url}/v2/models/binary_classifier/infer"
                    result = wrk(
                        target, BODY, concurrency=concurrency, seconds=args.seconds, headers=AUTH
                    )
                    results.setdefault((name, concurrency), []).append(result)
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=30)
        sink.should_exit = True
    print(median_table(results))


if __name__ == "__main__":
    main()

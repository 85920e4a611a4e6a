"""Shared pieces of the benchmarks: ports, readiness, an OpenMaaS server, and wrk with a JSON
POST body."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, timeout: float = 120, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2, headers=headers).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not become ready")


ADMIN_KEY = "om_benchmark_admin_key_0123456789abcdef"  # the server wants 32 characters at least


def serve_openmaas(
    directory: Path,
    env: dict[str, str] | None = None,
    *,
    workers: int = 1,
    pythonpath: str | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """``openmaas serve`` on a free port with ``ADMIN_KEY``, once it is ready, and its URL.

    Its output goes to ``<directory>.log``; a server that never becomes ready is reported
    with the end of that log (a refused setting, a port taken), not a bare timeout.
    """
    port = free_port()
    environment = {**os.environ, "OPENMAAS_ADMIN_KEY": ADMIN_KEY, "OPENMAAS_LOG_LEVEL": "warning"}
    environment.update(env or {})
    if pythonpath:
        environment["PYTHONPATH"] = pythonpath
    command = [sys.executable, "-m", "openmaas.cli", "serve", "--no-demo"]
    command += ["--workers", str(workers), "--port", str(port), "--data-dir", str(directory)]
    log = directory.with_name(f"{directory.name}.log")
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=environment, stdout=output, stderr=output)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            wait_ready(f"{url}/health/ready", timeout=1)
            return process, url
        except RuntimeError:
            if process.poll() is None and time.monotonic() < deadline:
                continue
        process.terminate()
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise RuntimeError(f"OpenMaaS at {url} did not become ready:\n{tail}")


def wrk(
    url: str, body: Any, *, concurrency: int, seconds: int, headers: dict[str, str] | None = None
) -> dict[str, float]:
    """Requests per second, p50 and p99 in ms, and non-2xx answers of one wrk run."""
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(json.dumps(body))}"]
    lines.append('wrk.headers["Content-Type"] = "application/json"')
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in (headers or {}).items()]
    return wrk_lua(url, "\n".join(lines), concurrency=concurrency, seconds=seconds)


def wrk_lua(url: str, lua: str, *, concurrency: int, seconds: int) -> dict[str, float]:
    """One wrk run driven by a Lua script (for requests that vary, such as their path)."""
    script = Path(tempfile.mkdtemp()) / "requests.lua"
    script.write_text(lua + "\n")
    threads = 1 if concurrency < 4 else 2
    command = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s", "--latency"]
    output = subprocess.run(
        [*command, "-s", str(script), url], capture_output=True, text=True, check=True
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    failures = re.search(r"Socket errors: .*?timeout (\d+)", output)
    return {
        "rps": float(_find(r"Requests/sec:\s+([\d.]+)", output)),
        "p50": _ms(_find(r"\s50%\s+([\d.]+\w+)", output)),
        "p99": _ms(_find(r"\s99%\s+([\d.]+\w+)", output)),
        "errors": float(errors.group(1)) if errors else 0.0,
        "timeouts": float(failures.group(1)) if failures else 0.0,
    }


def _find(pattern: str, text: str) -> str:
    found = re.search(pattern, text)
    if found is None:
        raise RuntimeError(f"wrk printed no {pattern!r}:\n{text}")
    return found.group(1)


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def median_table(
    results: dict[tuple[str, int], list[dict[str, float]]], first: str = "server"
) -> str:
    """One line per row: the median round's numbers, and the lowest and highest rate."""
    out = [f"| {first} | concurrency | requests/s (range) | p50 ms | p99 ms | non-2xx |"]
    out.append("|---|---|---|---|---|---|")
    for (name, concurrency), runs in results.items():
        median = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]
        spread = f"{min(r['rps'] for r in runs):.0f}-{max(r['rps'] for r in runs):.0f}"
        errors = sum(r["errors"] for r in runs)
        out.append(
            f"| {name} | {concurrency} | {median['rps']:.0f} ({spread}) | {median['p50']:.2f} | "
            f"{median['p99']:.2f} | {errors:.0f} |"
        )
    return "\n".join(out)

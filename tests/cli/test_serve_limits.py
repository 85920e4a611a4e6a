"""``openmaas serve`` in a real process: header size and idle limits, timestamped logs."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.servers import free_port, wait_ready

_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")


@contextmanager
def _serve(tmp_path: Path, **settings: str) -> Iterator[tuple[str, Path]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENMAAS_")}
    env.update({f"OPENMAAS_{k.upper()}": v for k, v in settings.items()})
    command = [sys.executable, "-m", "openmaas.cli", "serve", "--port", str(port)]
    command += ["--data-dir", str(tmp_path / "data")]
    log = tmp_path / "stderr.log"
    with log.open("w") as err:
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(process, url, timeout=120)
        yield url, log
    finally:
        process.terminate()
        process.wait(timeout=30)


def _status_line(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    answer = b""
    try:
        while b"\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return answer.split(b"\r\n", 1)[0]


def test_limits_and_json_logs(tmp_path: Path) -> None:
    with _serve(tmp_path, log_format="json", access_log="true", keep_alive_timeout_seconds="1") as (
        url,
        log,
    ):
        port = int(url.rsplit(":", 1)[1])
        # A 32 MiB header line is refused long before it is all sent.
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
            sent = 0
            chunk = b"a" * (1024 * 1024)
            try:
                while sent < 32 * 1024 * 1024:
                    sock.sendall(chunk)
                    sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
            status = _status_line(sock)
        assert status.split(b" ")[1:2] == [b"431"] or status == b"", status
        # A head just past the limit (64 KiB) is answered 431; one just under it is served.
        for size, expected in ((70 * 1024, b"431"), (60 * 1024, b"200")):
            with socket.create_connection(("127.0.0.1", port)) as sock:
                head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size
                sock.sendall(head + b"\r\n\r\n")
                assert _status_line(sock).split(b" ")[1] == expected, size
        # The server is unharmed and still answers.
        assert httpx.get(f"{url}/healthz").status_code == 200
        # An idle keep-alive connection is closed after the timeout.
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b" 200 " in _status_line(sock)
            sock.settimeout(10)
            started = time.monotonic()
            while sock.recv(65536):
                pass
            assert time.monotonic() - started < 8, "an idle connection was kept open"
        assert "server" not in httpx.get(f"{url}/healthz").headers
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    assert any("Application startup complete" in e["message"] for e in entries), lines
    assert any("/healthz" in e["message"] and e["logger"] == "uvicorn.access" for e in entries)
    for entry in entries:
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", entry["time"]), entry
        assert entry["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), entry
    uvicorn_lines = [line for line in lines if "Uvicorn running" in line or "startup" in line]
    assert uvicorn_lines and all(line.startswith("{") for line in uvicorn_lines), lines


def test_text_logs_carry_timestamps(tmp_path: Path) -> None:
    with _serve(tmp_path, access_log="true") as (url, log):
        assert httpx.get(f"{url}/healthz").status_code == 200
        deadline = time.monotonic() + 10
        while "/healthz" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    lines = log.read_text().splitlines()
    served = [line for line in lines if "Uvicorn running" in line or "/healthz" in line]
    assert len(served) >= 2, lines
    for line in served:
        assert _TIMESTAMP.match(line), line

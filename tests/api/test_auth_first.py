"""The caller is checked before the body is read: strangers cannot make the server store
or parse what they send, nor learn which models exist."""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlsplit

import pytest

from tests.accounts import Factory
from tests.conftest import Platform

# Under the tests' limits (2 MiB for uploads, 1 MiB for other bodies), so only the caller
# can be the reason to refuse.
UPLOAD_BYTES = 1536 * 1024
BODY_BYTES = 768 * 1024
SENT = 64 * 1024
BOUNDARY = "openmaas-test-boundary"


def _partial_post(
    url: str, path: str, headers: dict[str, str], first: bytes, declared: int = BODY_BYTES
) -> tuple[int, dict]:
    """Send a request's headers and the start of a body of ``declared`` bytes, then wait
    for an answer without sending the rest: the status and JSON body the server answered
    with before it had the whole body."""
    parts = urlsplit(url)
    lines = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {declared}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(head + first)
        sock.settimeout(5)
        received = b""
        deadline = time.monotonic() + 5
        while b"\r\n\r\n" not in received or not _complete(received):
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                pytest.fail("no answer before the whole body was sent: the server waited for it")
            if not chunk:
                break
            received += chunk
            assert time.monotonic() < deadline, "no complete answer in 5 s"
    head_part, _, body = received.partition(b"\r\n\r\n")
    status = int(head_part.split(b" ", 2)[1])
    return status, json.loads(body)


def _complete(received: bytes) -> bool:
    head, _, body = received.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False


def _multipart_start() -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="artifact"; '
        f'filename="big.skops"\r\nContent-Type: application/octet-stream\r\n\r\n'
    ).encode() + b"\0" * (SENT - 200)


def test_an_anonymous_upload_is_refused_before_it_is_sent(platform: Platform) -> None:
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    status, body = _partial_post(
        platform.url, "/models/anything/versions", headers, _multipart_start(), UPLOAD_BYTES
    )
    assert status == 401, body
    assert body["code"] == "missing_credentials"
    status, body = _partial_post(
        platform.url,
        "/models/anything/versions",
        {**headers, "Authorization": "Bearer om_not_a_key"},
        _multipart_start(),
        UPLOAD_BYTES,
    )
    assert status == 401, body


def test_a_developer_upload_to_an_admin_route_is_refused_before_it_is_sent(
    platform: Platform, make: Factory
) -> None:
    """A logged-in developer (session cookie and CSRF token) is no admin: 403 first."""
    developer = make.developer()
    cookies = "; ".join(f"{name}={value}" for name, value in developer.client.cookies.items())
    headers = {
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        "Cookie": cookies,
        "X-CSRF-Token": developer.client.headers["X-CSRF-Token"],
    }
    status, body = _partial_post(
        platform.url, "/models/anything/versions", headers, _multipart_start(), UPLOAD_BYTES
    )
    assert status == 403, body
    assert body["code"] == "admin_required"
    # An application's key manages nothing either.
    _developer, _app, key = make.key_for()
    headers = {"Content-Type": headers["Content-Type"], "Authorization": f"Bearer {key}"}
    status, body = _partial_post(
        platform.url, "/models/anything/versions", headers, _multipart_start(), UPLOAD_BYTES
    )
    assert status == 403, body


def test_json_management_bodies_wait_for_the_caller(platform: Platform) -> None:
    # A JSON body that never ends: the route must answer before reading it.
    first = b'{"name": "' + b"x" * SENT
    for path in ("/plans", "/deployments/deploy", "/applications"):
        status, body = _partial_post(
            platform.url, path, {"Content-Type": "application/json"}, first
        )
        assert status == 401, (path, body)


def test_inference_bodies_wait_for_the_key(platform: Platform, classifiers: list[str]) -> None:
    first = b'{"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP64", "data": [' + (
        b"0.5, " * (SENT // 5)
    )
    for path in (
        f"/v2/models/{classifiers[0]}/infer",
        "/v2/models/no-such-model/infer",
        "/predict",
        "/v1/chat/completions",
    ):
        status, body = _partial_post(
            platform.url, path, {"Content-Type": "application/json"}, first
        )
        assert status == 401, (path, body)


def test_strangers_cannot_tell_a_deployed_model_from_an_unknown_one(
    platform: Platform, classifiers: list[str]
) -> None:
    client = platform.anonymous
    deployed, unknown = classifiers[0], "no-such-model-anywhere"
    request = {
        "inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]
    }
    answers = []
    for name in (deployed, unknown):
        for response in (
            client.post(f"/v2/models/{name}/infer", json=request),
            client.post(f"/v2/models/{name}/versions/1/infer", json=request),
            # Malformed bodies are not even parsed.
            client.post(f"/v2/models/{name}/infer", content=b'{"inputs": [{"shape": "x"'),
            client.get(f"/v2/models/{name}"),
            client.get(f"/v2/models/{name}/ready"),
            client.post(f"/v2/models/{name}/infer", json=request, headers={"X-API-Key": "nope"}),
        ):
            answers.append((name, response.status_code, response.json()["error"]))
    assert {status for _name, status, _message in answers} == {401}, answers
    by_name = [[(s, c) for n, s, c in answers if n == name] for name in (deployed, unknown)]
    assert by_name[0] == by_name[1]
    # With the admin key, the deployed model answers and the unknown one is a 404.
    assert platform.admin.post(f"/v2/models/{deployed}/infer", json=request).status_code == 200
    assert platform.admin.post(f"/v2/models/{unknown}/infer", json=request).status_code == 404

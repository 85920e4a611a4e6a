"""Management routes read JSON however the client labels it, or say plainly what to send."""

from __future__ import annotations

import json
import subprocess

from tests.conftest import ADMIN_KEY, Platform


def test_no_content_type_and_curls_default_are_read_as_json(
    platform: Platform, unique_name: str
) -> None:
    unlabelled = platform.admin.post("/models", content=json.dumps({"name": unique_name}))
    assert unlabelled.status_code == 201, unlabelled.text
    # curl -d labels its body application/x-www-form-urlencoded.
    done = subprocess.run(
        [
            "curl",
            "-s",
            "-H",
            f"Authorization: Bearer {ADMIN_KEY}",
            "-d",
            json.dumps({"name": f"{unique_name}_curl", "description": "from curl"}),
            f"{platform.url}/models",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(done.stdout)["description"] == "from curl"


def test_other_media_types_are_a_clear_415(platform: Platform, unique_name: str) -> None:
    for content_type, body in (
        ("text/plain", json.dumps({"name": unique_name})),
        ("application/x-www-form-urlencoded", f"name={unique_name}"),
        ("application/xml", "<model/>"),
    ):
        answer = platform.admin.post(
            "/models", content=body, headers={"Content-Type": content_type}
        )
        assert answer.status_code == 415, answer.text
        assert answer.json()["code"] == "unsupported_media_type"
        assert "application/json" in answer.json()["message"]
    assert platform.admin.get(f"/models/{unique_name}").status_code == 404
    # An unlabelled body still has to be JSON: a clear 422 says so.
    garbled = platform.admin.post("/models", content=b"name=x")
    assert garbled.status_code == 422 and garbled.json()["code"] == "invalid_request"

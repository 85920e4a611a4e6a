"""The registry's management API, over HTTP against a running server."""

from __future__ import annotations

import base64
import hashlib
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from openmaas.client import Client, ClientError
from tests.conftest import ADMIN_KEY, Platform
from tests.models import classifier, onnx_file, python_file, regressor, skops_file


def _create(platform: Platform, name: str, **fields: object) -> dict:
    response = platform.admin.post("/models", json={"name": name, **fields})
    assert response.status_code == 201, response.text
    return response.json()


def _upload(platform: Platform, name: str, path: Path, **data: str):
    with path.open("rb") as handle:
        return platform.admin.post(
            f"/models/{name}/versions",
            files={"artifact": (path.name, handle, "application/octet-stream")},
            data=data,
        )


def _assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"code", "message"}, body
    if code is not None:
        assert body["code"] == code, body
    return body


class TestAuthentication:
    def test_no_credentials_is_401(self, platform: Platform) -> None:
        _assert_error(platform.anonymous.get("/models"), 401, "missing_credentials")
        _assert_error(platform.anonymous.post("/models", json={"name": "x"}), 401)

    @pytest.mark.parametrize(
        "header",
        [
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Bearer"},
            {"Authorization": "Basic !!!not-base64"},
            {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe").decode()},
            {"Authorization": "Digest abc"},
            {"X-API-Key": "om_deadbeef_nothing"},
        ],
    )
    def test_bad_credentials_are_401(self, platform: Platform, header: dict[str, str]) -> None:
        response = platform.anonymous.get("/models", headers=header)
        _assert_error(response, 401)

    def test_key_accepted_in_every_documented_place(self, platform: Platform) -> None:
        basic_user = base64.b64encode(f"{ADMIN_KEY}:".encode()).decode()
        basic_password = base64.b64encode(f"any:{ADMIN_KEY}".encode()).decode()
        for headers in (
            {"Authorization": f"Bearer {ADMIN_KEY}"},
            {"X-API-Key": ADMIN_KEY},
            {"Authorization": f"Basic {basic_user}"},
            {"Authorization": f"Basic {basic_password}"},
        ):
            assert platform.anonymous.get("/models", headers=headers).status_code == 200


class TestModels:
    def test_create_get_update_list(self, platform: Platform, unique_name: str) -> None:
        created = _create(
            platform, unique_name, description="d", task="classification", tags=["a", "b"]
        )
        assert created["name"] == unique_name
        assert created["latest_version"] is None
        assert created["owner"] == "admin-key"

        patched = platform.admin.patch(f"/models/{unique_name}", json={"description": "new"})
        assert patched.status_code == 200 and patched.json()["description"] == "new"

        fetched = platform.admin.get(f"/models/{unique_name}").json()
        assert fetched["tags"] == ["a", "b"] and fetched["versions"] == []

        listed = platform.admin.get("/models", params={"tag": "a", "q": unique_name}).json()
        assert [m["name"] for m in listed["models"]] == [unique_name]
        by_task = platform.admin.get("/models", params={"task": "classification"}).json()
        assert unique_name in {m["name"] for m in by_task["models"]}

    def test_duplicate_name_is_409(self, platform: Platform, unique_name: str) -> None:
        _create(platform, unique_name)
        response = platform.admin.post("/models", json={"name": unique_name})
        _assert_error(response, 409, "model_exists")

    @pytest.mark.parametrize("name", ["a/b", "a@b", "../x", " x", "x y", "", "stats"])
    def test_invalid_names_are_refused(self, platform: Platform, name: str) -> None:
        response = platform.admin.post("/models", json={"name": name})
        assert response.status_code in (400, 422), response.text
        assert "code" in response.json()

    def test_malformed_bodies_are_4xx(self, platform: Platform, unique_name: str) -> None:
        headers = {"Content-Type": "application/json"}
        cases = [
            b"{not json",
            b"[]",
            b'{"name": 5}',
            b'{"name": "x", "task": "astrology"}',
            b'{"name": "x", "unexpected": 1}',
        ]
        for body in cases:
            response = platform.admin.post("/models", content=body, headers=headers)
            _assert_error(response, 422)
        not_utf8 = platform.admin.post("/models", content=b"\xff\xfe\x00", headers=headers)
        _assert_error(not_utf8, 400)
        _create(platform, unique_name)
        response = platform.admin.patch(f"/models/{unique_name}", json={"name": "renamed"})
        _assert_error(response, 422)

    def test_huge_json_body_is_413(self, platform: Platform) -> None:
        body = b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}'
        response = platform.admin.post(
            "/models", content=body, headers={"Content-Type": "application/json"}
        )
        _assert_error(response, 413, "payload_too_large")

    def test_unknown_model_is_404(self, platform: Platform) -> None:
        for method, path in (
            ("GET", "/models/no_such_model"),
            ("PATCH", "/models/no_such_model"),
            ("DELETE", "/models/no_such_model"),
            ("GET", "/models/no_such_model/versions"),
            ("GET", "/models/no_such_model/versions/1"),
            ("GET", "/models/resolve/no_such_model@champion"),
        ):
            kwargs = {"json": {"description": "x"}} if method == "PATCH" else {}
            response = platform.admin.request(method, path, **kwargs)
            _assert_error(response, 404, "model_not_found")

    def test_stats_count_models_and_versions(
        self, platform: Platform, unique_name: str, tmp_path: Path
    ) -> None:
        before = platform.admin.get("/models/stats").json()
        _create(platform, unique_name)
        assert _upload(platform, unique_name, skops_file(tmp_path, regressor())).status_code == 201
        after = platform.admin.get("/models/stats").json()
        assert after["models"] == before["models"] + 1
        assert after["versions"] == before["versions"] + 1


class TestVersions:
    def test_upload_records_hash_size_and_signature(
        self, platform: Platform, unique_name: str, tmp_path: Path
    ) -> None:
        _create(platform, unique_name)
        path = skops_file(tmp_path, classifier(features=3))
        response = _upload(platform, unique_name, path, metrics='{"accuracy": 0.9}')
        assert response.status_code == 201, response.text
        version = response.json()
        assert version["version"] == 1
        assert version["runtime"] == "sklearn"
        assert version["artifact"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert version["artifact"]["size"] == path.stat().st_size
        assert version["metrics"] == {"accuracy": 0.9}
        assert version["signature"]["inputs"] == [
            {"name": "input", "datatype": "FP64", "shape": [-1, 3]}
        ]
        outputs = {o["name"]: o for o in version["signature"]["outputs"]}
        assert outputs["predict"]["datatype"] == "INT64"
        assert outputs["predict_proba"]["shape"] == [-1, 2]
        stored = platform.settings.artifacts_dir / unique_name / "1" / path.name
        assert stored.read_bytes() == path.read_bytes()

    def test_versions_increase_and_aliases_resolve(
        self, platform: Platform, unique_name: str, tmp_path: Path
    ) -> None:
        _create(platform, unique_name)
        for seed in range(3):
            path = skops_file(tmp_path, regressor(seed), f"r{seed}.skops")
            assert _upload(platform, unique_name, path).json()["version"] == seed + 1
        put = platform.admin.put(f"/models/{unique_name}/aliases/champion", json={"version": 2})
        assert put.status_code == 200 and put.json()["aliases"] == ["champion"]

        def resolved(ref: str) -> int:
            response = platform.admin.get(f"/models/resolve/{ref}")
            assert response.status_code == 200, response.text
            return int(response.json()["version"])

        assert resolved(f"{unique_name}@champion") == 2
        assert resolved(f"{unique_name}/1") == 1
        assert resolved(unique_name) == 3
        via_path = platform.admin.get(f"/models/{unique_name}/versions/champion").json()
        assert via_path["version"] == 2
        assert platform.admin.get(f"/models/{unique_name}/versions/latest").json()["version"] == 3
        model = platform.admin.get(f"/models/{unique_name}").json()
        assert model["aliases"] == {"champion": 2} and model["latest_version"] == 3

        # Moving an alias re-points it; deleting it makes it unknown.
        platform.admin.put(f"/models/{unique_name}/aliases/champion", json={"version": 3})
        assert resolved(f"{unique_name}@champion") == 3
        assert platform.admin.delete(f"/models/{unique_name}/aliases/champion").status_code == 204
        missing = platform.admin.get(f"/models/resolve/{unique_name}@champion")
        _assert_error(missing, 404, "alias_not_found")

    def test_alias_errors(self, platform: Platform, unique_name: str, tmp_path: Path) -> None:
        _create(platform, unique_name)
        _upload(platform, unique_name, skops_file(tmp_path, regressor()))
        to_missing = platform.admin.put(f"/models/{unique_name}/aliases/x", json={"version": 9})
        _assert_error(to_missing, 404, "version_not_found")
        bad_alias = platform.admin.put(f"/models/{unique_name}/aliases/9lives", json={"version": 1})
        _assert_error(bad_alias, 400, "invalid_alias")
        latest = platform.admin.put(f"/models/{unique_name}/aliases/latest", json={"version": 1})
        _assert_error(latest, 400, "invalid_alias")
        bad_body = platform.admin.put(f"/models/{unique_name}/aliases/x", json={"version": "one"})
        _assert_error(bad_body, 422)
        _assert_error(platform.admin.delete(f"/models/{unique_name}/aliases/nope"), 404)
        _assert_error(platform.admin.get(f"/models/{unique_name}/versions/0"), 400)
        _assert_error(platform.admin.get(f"/models/{unique_name}/versions/7"), 404)

    def test_concurrent_uploads_get_distinct_numbers(
        self, platform: Platform, unique_name: str, tmp_path: Path
    ) -> None:
        _create(platform, unique_name)
        paths = [skops_file(tmp_path, regressor(i), f"m{i}.skops") for i in range(8)]
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda p: _upload(platform, unique_name, p), paths))
        assert all(r.status_code == 201 for r in responses), [r.text for r in responses]
        assert sorted(r.json()["version"] for r in responses) == list(range(1, 9))

    def test_onnx_and_python_runtimes(
        self, platform: Platform, unique_name: str, tmp_path: Path
    ) -> None:
        _create(platform, unique_name)
        onnx = _upload(platform, unique_name, onnx_file(tmp_path, classifier(4), 4)).json()
        assert onnx["runtime"] == "onnx"
        assert onnx["signature"]["inputs"][0]["datatype"] == "FP32"
        assert onnx["signature"]["inputs"][0]["shape"][-1] == 4
        python = _upload(platform, unique_name, python_file(tmp_path), allow_code="true")
        assert python.status_code == 201, python.text
        assert python.json()["signature"]["outputs"][0]["name"] == "doubled"

    def test_code_running_formats_need_permission(
        self, platform: Platform, unique_name: str, tmp_path: Path
    ) -> None:
        _create(platform, unique_name)
        pickled = tmp_path / "model.pkl"
        pickled.write_bytes(pickle.dumps(regressor()))
        refused = _upload(platform, unique_name, pickled)
        _assert_error(refused, 400, "code_not_allowed")
        joblib_file = tmp_path / "model.joblib"
        joblib_file.write_bytes(pickle.dumps(regressor()))
        _assert_error(_upload(platform, unique_name, joblib_file), 400, "code_not_allowed")
        python = _upload(platform, unique_name, python_file(tmp_path))
        _assert_error(python, 400, "code_not_allowed")
        # A pickle in disguise is not unpickled either: skops refuses to read it.
        disguised = tmp_path / "model.skops"
        disguised.write_bytes(pickle.dumps(regressor()))
        _assert_error(_upload(platform, unique_name, disguised), 400, "invalid_artifact")
        assert platform.admin.get(f"/models/{unique_name}").json()["versions"] == []

        allowed = _upload(platform, unique_name, pickled, allow_code="true")
        assert allowed.status_code == 201, allowed.text
        assert allowed.json()["allow_code"] is True

    @pytest.mark.parametrize(
        "filename",
        ["../../evil.skops", "..", "/etc/passwd", "a/b.skops", "..\\x.skops", ".hidden", ""],
    )
    def test_path_traversal_file_names_are_refused(
        self, platform: Platform, unique_name: str, filename: str, tmp_path: Path
    ) -> None:
        _create(platform, unique_name)
        content = skops_file(tmp_path, regressor()).read_bytes()
        response = platform.admin.post(
            f"/models/{unique_name}/versions",
            files={"artifact": (filename, content, "application/octet-stream")},
        )
        assert response.status_code in (400, 422), response.text
        assert response.json()["code"] in ("invalid_filename", "invalid_request")
        root = platform.settings.artifacts_dir
        assert not (root.parent / "evil.skops").exists()
        assert not (root / unique_name).exists()

    def test_bad_uploads(self, platform: Platform, unique_name: str, tmp_path: Path) -> None:
        _create(platform, unique_name)
        url = f"/models/{unique_name}/versions"
        no_file = platform.admin.post(url, data={"description": "x"})
        _assert_error(no_file, 422)
        garbage = platform.admin.post(
            url,
            content=b"--xyz\r\nthis is not multipart",
            headers={"Content-Type": "multipart/form-data; boundary=xyz"},
        )
        assert garbage.status_code in (400, 422), garbage.text
        not_a_model = platform.admin.post(
            url, files={"artifact": ("model.skops", b"hello", "application/octet-stream")}
        )
        _assert_error(not_a_model, 400, "invalid_artifact")
        empty = platform.admin.post(url, files={"artifact": ("model.skops", b"", "x/y")})
        _assert_error(empty, 400, "empty_artifact")
        unknown_format = platform.admin.post(url, files={"artifact": ("model.bin", b"abc", "x/y")})
        _assert_error(unknown_format, 400, "unknown_runtime")
        bad_json = _upload(platform, unique_name, skops_file(tmp_path, regressor()), metrics="{")
        _assert_error(bad_json, 400, "invalid_json")
        bad_metrics = _upload(
            platform, unique_name, skops_file(tmp_path, regressor()), metrics='{"a": "b"}'
        )
        _assert_error(bad_metrics, 400, "invalid_metrics")
        bad_signature = _upload(
            platform,
            unique_name,
            skops_file(tmp_path, regressor()),
            signature='{"inputs": [{"name": "x", "datatype": "FP128", "shape": [1]}]}',
        )
        _assert_error(bad_signature, 400, "invalid_signature")
        to_missing_model = _upload(platform, "no_such_model", skops_file(tmp_path, regressor()))
        _assert_error(to_missing_model, 404, "model_not_found")
        assert platform.admin.get(f"/models/{unique_name}").json()["versions"] == []

    def test_oversized_upload_is_413(
        self, platform: Platform, unique_name: str, tmp_path: Path
    ) -> None:
        _create(platform, unique_name)
        big = tmp_path / "big.skops"
        big.write_bytes(b"\0" * (platform.settings.max_artifact_bytes + 2 * 1024 * 1024))
        _assert_error(_upload(platform, unique_name, big), 413)

        def chunks():
            yield b'--b\r\nContent-Disposition: form-data; name="artifact"; filename="a.skops"'
            yield b"\r\n\r\n"
            for _ in range(5):
                yield b"\0" * (1024 * 1024)
            yield b"\r\n--b--\r\n"

        chunked = platform.admin.post(
            f"/models/{unique_name}/versions",
            content=chunks(),
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )
        _assert_error(chunked, 413)
        assert platform.admin.get("/health/live").status_code == 200

    def test_delete_version_and_model(
        self, platform: Platform, unique_name: str, tmp_path: Path
    ) -> None:
        _create(platform, unique_name)
        for seed in range(2):
            _upload(platform, unique_name, skops_file(tmp_path, regressor(seed), f"{seed}.skops"))
        platform.admin.put(f"/models/{unique_name}/aliases/prod", json={"version": 1})
        root = platform.settings.artifacts_dir / unique_name
        assert platform.admin.delete(f"/models/{unique_name}/versions/prod").status_code == 204
        assert not (root / "1").exists() and (root / "2").exists()
        _assert_error(platform.admin.get(f"/models/{unique_name}/versions/1"), 404)
        assert platform.admin.get(f"/models/{unique_name}").json()["aliases"] == {}
        assert platform.admin.delete(f"/models/{unique_name}").status_code == 204
        assert not root.exists()
        _assert_error(platform.admin.get(f"/models/{unique_name}"), 404)


class TestClient:
    def test_register_fitted_estimator(self, platform: Platform, unique_name: str) -> None:
        seen: list[int] = []
        with Client(platform.url, ADMIN_KEY) as client:
            version = client.register(
                unique_name, classifier(), progress=lambda sent, total: seen.append(sent)
            )
            assert version["version"] == 1 and version["runtime"] == "sklearn"
            assert seen and seen[-1] == version["artifact"]["size"]
            assert client.get_model(unique_name)["task"] == "classification"
            client.set_alias(unique_name, "champion", 1)
            assert client.resolve(f"{unique_name}@champion")["version"] == 1
            assert unique_name in {m["name"] for m in client.list_models()}
            with pytest.raises(ClientError) as error:
                client.create_model(unique_name)
            assert error.value.status == 409 and error.value.code == "model_exists"
            client.delete_model(unique_name)

    def test_register_onnx_file(self, platform: Platform, unique_name: str, tmp_path: Path) -> None:
        with Client(platform.url, ADMIN_KEY) as client:
            version = client.register(unique_name, onnx_file(tmp_path, regressor(), 2))
        assert version["runtime"] == "onnx"

    def test_wrong_key(self, platform: Platform) -> None:
        with Client(platform.url, "om_wrong") as client, pytest.raises(ClientError) as error:
            client.list_models()
        assert error.value.status == 401

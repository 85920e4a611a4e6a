"""Registering language-model versions through the management API."""

from __future__ import annotations

import json
from pathlib import Path

from openmaas.demo.tiny_llm import tiny_llm_archive
from tests.api.test_models import _create, _upload
from tests.conftest import Platform


def test_an_endpoint_file_registers_a_remote_model(
    platform: Platform, unique_name: str, tmp_path: Path
) -> None:
    _create(platform, unique_name, task="text-generation")
    endpoint = tmp_path / "llama.openai.json"
    endpoint.write_text(json.dumps({"base_url": "http://vllm:8000/v1", "api_key": "sk-secret"}))
    version = _upload(platform, unique_name, endpoint, options='{"model": "llama"}')
    assert version.status_code == 201, version.text
    assert version.json()["runtime"] == "openai"
    assert "sk-secret" not in version.text  # the secret stays in the stored file
    leaked = _upload(platform, unique_name, endpoint, options='{"api_key": "sk-shown"}')
    assert leaked.status_code == 400 and leaked.json()["code"] == "secret_in_options"


def test_a_model_archive_registers_with_the_transformers_runtime(
    platform: Platform, unique_name: str, tmp_path: Path
) -> None:
    _create(platform, unique_name, task="text-generation")
    archive = tiny_llm_archive(tmp_path)
    version = _upload(platform, unique_name, archive, runtime="transformers")
    assert version.status_code == 201, version.text
    assert version.json()["signature"]["outputs"][0]["datatype"] == "BYTES"
    not_a_model = tmp_path / "empty.json"
    not_a_model.write_text("{}")
    refused = _upload(platform, unique_name, not_a_model, runtime="transformers")
    assert refused.status_code == 400 and refused.json()["code"] == "invalid_artifact"

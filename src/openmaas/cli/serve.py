"""``openmaas serve``: migrate, install the demo if asked, print the banner, run uvicorn."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from openmaas.cli.common import console

if TYPE_CHECKING:
    from openmaas.settings import Settings


async def _prepare(settings: Settings) -> object | None:
    from openmaas.platform import Platform

    platform = Platform.build(settings)
    try:
        await platform.start()
        if settings.demo:
            from openmaas.demo import install_demo

            with console().status("Training and registering the demo models..."):
                return await install_demo(platform)
        return None
    finally:
        await platform.stop()


def banner(settings: Settings, demo: object | None, workers: int) -> list[str]:
    """What ``serve`` prints before it starts: plain lines, so every command in them can be
    copied as printed (a box drawn around them would be copied too)."""
    url = settings.public_url
    lines = [
        f"OpenMaaS is starting at {url}",
        f"API docs:      {url}/docs",
        f"Database:      {settings.database_url.split('@')[-1]}",
        f"Artifacts:     {settings.artifact_url or settings.data_dir.resolve() / 'artifacts'}",
    ]
    if workers > 1 and not settings.redis_url:
        lines.append(
            f"Each of the {workers} workers counts rate limits on its own, so a "
            f"plan's limit is reached {workers} times over: set OPENMAAS_REDIS_URL to "
            "share one exact limit."
        )
    if demo is not None:
        lines += [
            "",
            "Demo (only with --demo):",
            f"  admin login: {demo.admin_username} / {demo.admin_password}",  # type: ignore[attr-defined]
            f"  admin key:   {demo.admin_key}",  # type: ignore[attr-defined]
            f"  developer:   {demo.developer_username} / {demo.developer_password}",  # type: ignore[attr-defined]
            f"  dev1 app:    {demo.application} on plan {demo.plan}",  # type: ignore[attr-defined]
            f"  dev1 key:    {demo.developer_key}",  # type: ignore[attr-defined]
            "  plans:       free, pro, enterprise (GET /plans)",
            f"  models:      {url}/predict, {url}/v2 and {url}/v1 (OpenAI); "
            "tiny-chat is untrained and talks nonsense",
            "",
            "Try:",
            f"  curl -H 'Authorization: Bearer {demo.admin_key}' {url}/models",  # type: ignore[attr-defined]
            f"  curl -H 'Authorization: Bearer {demo.developer_key}' "  # type: ignore[attr-defined]
            f"-d '{{\"input\": 2.5}}' {url}/predict/quadratic_predictor",
        ]
    elif settings.admin_key is None:
        lines += [
            "",
            "Admin credential: set OPENMAAS_ADMIN_KEY, or start with --demo for a demo admin key.",
        ]
    else:
        lines += ["", "Admin credential: the OPENMAAS_ADMIN_KEY you set."]
    return lines


def _print_banner(lines: list[str]) -> None:
    # No markup, no highlighting and no wrapping: a long command stays one line.
    out = console()
    for line in lines:
        out.print(line, markup=False, highlight=False, soft_wrap=True)


def serve(
    host: str | None = typer.Option(None, help="Interface to bind [default: 127.0.0.1]"),
    port: int | None = typer.Option(None, help="Port to bind [default: 8000]"),
    data_dir: Path | None = typer.Option(None, help="Database and artifacts directory"),
    workers: int = typer.Option(1, min=1, help="Worker processes"),
    demo: bool = typer.Option(False, "--demo/--no-demo", help="Install demo models and users"),
) -> None:
    """Start the platform."""
    import asyncio

    import uvicorn

    from openmaas.logs import log_config
    from openmaas.settings import load_settings
    from openmaas.store.database import DatabaseUnavailable

    overrides: dict[str, object] = {"demo": demo}
    for field, value in (("host", host), ("port", port), ("data_dir", data_dir)):
        if value is not None:
            overrides[field] = value
    settings = load_settings(**overrides)
    try:
        credentials = asyncio.run(_prepare(settings))
    except DatabaseUnavailable as exc:
        console().print(f"[red]OpenMaaS cannot start: {exc.message}[/red]", soft_wrap=True)
        raise typer.Exit(1) from None
    _print_banner(banner(settings, credentials, workers))
    if workers > 1:
        _pool_metrics(settings.data_dir.resolve() / "metrics")
    # Workers rebuild Settings from the environment; the parent already migrated.
    os.environ.update(
        OPENMAAS_DATA_DIR=str(settings.data_dir),
        OPENMAAS_DATABASE_URL=settings.database_url,
        OPENMAAS_DEMO="false",
        OPENMAAS_MIGRATE_ON_START="false",
    )
    uvicorn.run(
        "openmaas.app:create_app_from_environment",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        log_level=settings.log_level,
        log_config=log_config(settings.log_level, settings.log_format),
        access_log=settings.access_log,
        # httptools with the request line and headers bounded (api/http_protocol.py): a
        # client cannot hold the server parsing a huge header. X-Forwarded-* are honoured
        # by the application, from OPENMAAS_TRUSTED_PROXIES only (security_headers.py).
        http="openmaas.api.http_protocol:BoundedHttpToolsProtocol",
        h11_max_incomplete_event_size=settings.max_header_bytes,
        timeout_keep_alive=settings.keep_alive_timeout_seconds,
        proxy_headers=False,
        server_header=False,
        # In-flight requests and streams get this long once a stop begins (shutdown.py).
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_seconds)),
    )


def _pool_metrics(directory: Path) -> None:
    """Make the workers write their metrics to files that any of them can read back.

    Set before the workers start: prometheus_client picks its storage when imported.
    Files of an earlier run would add its counts to this one's, so they go first.
    """
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ.update(PROMETHEUS_MULTIPROC_DIR=str(directory), OPENMAAS_METRICS_DIR=str(directory))

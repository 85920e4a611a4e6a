"""``openmaas artifacts``: where model artifacts are stored, and moving them elsewhere."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from openmaas.cli.common import console

if TYPE_CHECKING:
    from openmaas.artifacts import ArtifactStore
    from openmaas.artifacts.copying import CopyReport
    from openmaas.settings import Settings

app = typer.Typer(
    rich_markup_mode=None,  # plain help: Rich costs more to import than the rest
    help="Artifact storage (a folder or an S3 bucket).",
    no_args_is_help=True,
)


@app.command()
def migrate(
    to: str = typer.Option(..., "--to", help="Target: s3://bucket/prefix, or a folder"),
    source: str | None = typer.Option(
        None, "--from", help="Source [default: OPENMAAS_ARTIFACT_URL, else the data directory]"
    ),
) -> None:
    """Copy every registered version's artifact to another store, verified by SHA-256.

    Safe to run again: objects already there are skipped. Afterwards, point
    OPENMAAS_ARTIFACT_URL at the target and restart the platform.
    """
    import asyncio

    from openmaas.settings import load_settings
    from openmaas.store.database import DatabaseUnavailable

    settings = load_settings()
    try:
        report = asyncio.run(_migrate(settings, source, to))
    except DatabaseUnavailable as exc:
        console().print(f"[red]{exc.message}[/red]", soft_wrap=True)
        raise typer.Exit(1) from None
    console().print(
        f"{report.copied} copied, {report.skipped} already there, {len(report.failed)} failed"
    )
    for key, why in report.failed.items():
        console().print(f"[red]failed[/red] {key}: {why}", soft_wrap=True)
    if report.failed:
        raise typer.Exit(1)
    console().print(f"[green]Done.[/green] Now set OPENMAAS_ARTIFACT_URL={to} and restart.")


async def _migrate(settings: Settings, source_url: str | None, target_url: str) -> CopyReport:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from openmaas.artifacts import open_artifact_store
    from openmaas.artifacts.copying import ArtifactRecord, copy_artifacts
    from openmaas.store import Database, models_repo

    def store(url: str) -> ArtifactStore:
        return open_artifact_store(
            url,
            data_dir=settings.data_dir,
            max_bytes=settings.max_artifact_bytes,
            cache_bytes=settings.artifact_cache_bytes,
            s3_options=settings.s3_options(),
        )

    source = store(settings.artifact_url if source_url is None else source_url)
    target = store(target_url)
    if source.location == target.location:
        raise typer.BadParameter("the source and the target are the same store", param_hint="--to")
    database = Database(
        settings.database_url, connect_timeout_s=settings.database_connect_timeout_seconds
    )
    try:
        async with database.session() as session:
            rows = await models_repo.artifact_rows(session=session)
    finally:
        await database.close()
    records = [ArtifactRecord(key, sha256, size) for key, sha256, size in rows]
    console().print(f"Copying {len(records)} artifacts from {source.location} to {target.location}")
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console(),
    ) as progress:
        task = progress.add_task("artifacts", total=sum(r.size for r in records))
        return await copy_artifacts(
            records,
            source.objects,
            target.objects,
            progress=lambda n: progress.advance(task, n),
        )

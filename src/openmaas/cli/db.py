"""``openmaas db``: schema migrations."""

from __future__ import annotations

import typer

from openmaas.cli.common import console

app = typer.Typer(
    rich_markup_mode=None,  # plain help: Rich costs more to import than the rest
    help="Database schema.",
    no_args_is_help=True,
)


@app.command()
def upgrade() -> None:
    """Apply every pending migration."""
    import asyncio

    from rich.console import Console

    from openmaas.health import wait_for_database
    from openmaas.settings import load_settings
    from openmaas.store import Database
    from openmaas.store.database import DatabaseUnavailable

    async def run() -> None:
        settings = load_settings()
        settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        database = Database(
            settings.database_url,
            connect_timeout_s=settings.database_connect_timeout_seconds,
        )
        try:
            await wait_for_database(database, wait_s=settings.startup_wait_seconds, need_head=False)
            await database.migrate()
        finally:
            await database.close()

    try:
        asyncio.run(run())
    except DatabaseUnavailable as exc:
        Console(stderr=True).print(f"[red]{exc.message}[/red]", soft_wrap=True)
        raise typer.Exit(1) from None
    console().print("[green]The database schema is up to date.[/green]")

"""``openmaas db``: schema migrations."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console

from openmaas.settings import Settings
from openmaas.store import Database

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command()
def upgrade() -> None:
    """Apply every pending migration."""

    async def run() -> None:
        settings = Settings()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        database = Database(settings.database_url)
        try:
            await database.migrate()
        finally:
            await database.close()

    asyncio.run(run())
    Console().print("[green]The database schema is up to date.[/green]")

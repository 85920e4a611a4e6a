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

    from openmaas.settings import Settings
    from openmaas.store import Database

    async def run() -> None:
        settings = Settings()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        database = Database(settings.database_url)
        try:
            await database.migrate()
        finally:
            await database.close()

    asyncio.run(run())
    console().print("[green]The database schema is up to date.[/green]")

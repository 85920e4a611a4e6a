"""The ``openmaas`` command."""

from __future__ import annotations

import typer

from openmaas.cli import db, models, serve

app = typer.Typer(
    name="openmaas",
    help="OpenMaaS: Models as a Service. Registry, serving and API management.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("serve")(serve.serve)
app.add_typer(db.app, name="db")
app.add_typer(models.app, name="models")


def main() -> None:
    app()

"""The ``openmaas`` command."""

from __future__ import annotations

import typer

from openmaas.cli import artifacts, billing, db, deployments, health, models, plans, routes, serve

app = typer.Typer(
    rich_markup_mode=None,  # plain help: Rich costs more to import than the rest
    name="openmaas",
    help="OpenMaaS: Models as a Service. Registry, serving and API management.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("serve")(serve.serve)
app.command("health")(health.health)
app.command("deploy")(deployments.deploy)
app.command("undeploy")(deployments.undeploy)
app.command("deployments")(deployments.deployments)
app.add_typer(db.app, name="db")
app.add_typer(models.app, name="models")
app.add_typer(routes.app, name="routes")
app.add_typer(plans.app, name="plans")
app.add_typer(billing.invoices, name="invoices")
app.add_typer(billing.usage, name="usage")
app.add_typer(artifacts.app, name="artifacts")


def main() -> None:
    app()

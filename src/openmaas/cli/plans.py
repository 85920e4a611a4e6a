"""``openmaas plans apply | list | show | delete``: application plans and their rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from openmaas.cli.common import KeyOption, UrlOption, console, fail

app = typer.Typer(
    rich_markup_mode=None,  # plain help: Rich costs more to import than the rest
    help="Application plans: limits, prices and per-model rules.",
    no_args_is_help=True,
)


def _terms(fields: dict[str, Any]) -> str:
    """The limits and prices a plan or rule sets, on one line."""
    from openmaas.domain.plans import LIMIT_FIELDS, PRICE_FIELDS

    parts = [f"{name}={fields[name]}" for name in LIMIT_FIELDS if fields.get(name) is not None]
    parts += [f"{name}={fields[name]}" for name in PRICE_FIELDS if fields.get(name)]
    return ", ".join(parts) or "no limits"


@app.command("apply")
def apply(
    file: Path = typer.Option(
        ..., "-f", "--file", exists=True, dir_okay=False, help="YAML or JSON"
    ),
    url: str = UrlOption,
    key: str | None = KeyOption,
) -> None:
    """Create the plans of a file, or change the plans of the same names."""
    import yaml

    from openmaas.client import Client, ClientError

    try:
        documents = [doc for doc in yaml.safe_load_all(file.read_text()) if doc is not None]
    except yaml.YAMLError as error:
        console().print(f"[red]{file} is not valid YAML:[/red] {error}")
        raise typer.Exit(2) from error
    with Client(url, key) as client:
        for document in documents:
            if not isinstance(document, dict):
                console().print(f"[red]{file}: each document is a plan (a mapping)[/red]")
                raise typer.Exit(2)
            try:
                plan, created = client.apply_plan(document)
            except ClientError as error:
                fail(error)
                return
            verb = "Created" if created else "Changed"
            rules = len(plan["rules"])
            console().print(f"[green]{verb}[/green] plan {plan['name']} ({rules} rules)")


@app.command("list")
def list_plans(url: str = UrlOption, key: str | None = KeyOption) -> None:
    """List plans with their models, limits, prices and rules."""
    from rich.table import Table

    from openmaas.client import Client, ClientError

    with Client(url, key) as client:
        try:
            plans = client.plans()
        except ClientError as error:
            fail(error)
            return
    table = Table("name", "models", "limits and prices", "rules", "approval")
    for plan in plans:
        rules = "\n".join(f"{', '.join(rule['models'])}: {_terms(rule)}" for rule in plan["rules"])
        table.add_row(
            plan["name"],
            ", ".join(plan["models"]) or "none",
            _terms(plan),
            rules or "-",
            "yes" if plan["approval_required"] else "no",
        )
    console().print(table)


@app.command("show")
def show(name: str, url: str = UrlOption, key: str | None = KeyOption) -> None:
    """Print one plan as YAML (what ``apply`` takes)."""
    import yaml

    from openmaas.client import Client, ClientError

    with Client(url, key) as client:
        try:
            plan = client.plan(name)
        except ClientError as error:
            fail(error)
            return
    shown = {k: v for k, v in plan.items() if k not in ("id", "created_at") and v is not None}
    console().print(yaml.safe_dump(shown, sort_keys=False), highlight=False)


@app.command("delete")
def delete(name: str, url: str = UrlOption, key: str | None = KeyOption) -> None:
    """Delete a plan no application uses."""
    from openmaas.client import Client, ClientError

    with Client(url, key) as client:
        try:
            client.delete_plan(name)
        except ClientError as error:
            fail(error)
            return
    console().print(f"[green]Deleted[/green] plan {name}")

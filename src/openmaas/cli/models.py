"""``openmaas models``: the registry from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from openmaas.cli.common import KeyOption, UrlOption, console, fail

if TYPE_CHECKING:
    from openmaas.client import Client

app = typer.Typer(
    rich_markup_mode=None,  # plain help: Rich costs more to import than the rest
    help="Registered models and their versions.",
    no_args_is_help=True,
)
__all__ = ["KeyOption", "UrlOption", "app", "fail"]


def _client(url: str, key: str | None) -> Client:
    from openmaas.client import Client

    return Client(url, key)


@app.command("list")
def list_models(url: str = UrlOption, key: str | None = KeyOption) -> None:
    """List registered models."""
    from rich.table import Table

    from openmaas.client import ClientError

    with _client(url, key) as client:
        try:
            models = client.list_models()
        except ClientError as error:
            fail(error)
            return
    table = Table("name", "task", "latest", "versions", "aliases", "tags", "description")
    for model in models:
        aliases = ", ".join(f"{a}→{v}" for a, v in model["aliases"].items())
        table.add_row(
            model["name"],
            model["task"],
            str(model["latest_version"] or "-"),
            str(model["version_count"]),
            aliases,
            ", ".join(model["tags"]),
            model["description"],
        )
    console().print(table)


@app.command()
def show(
    ref: str = typer.Argument(..., help="name, name/3 or name@alias"),
    url: str = UrlOption,
    key: str | None = KeyOption,
) -> None:
    """Show a model and its versions, or one version."""
    from rich.table import Table

    from openmaas.client import ClientError

    with _client(url, key) as client:
        try:
            if "/" in ref or "@" in ref:
                console().print_json(json.dumps(client.resolve(ref)))
                return
            model = client.get_model(ref)
        except ClientError as error:
            fail(error)
            return
    console().print(f"[bold]{model['name']}[/bold] ({model['task']}): {model['description']}")
    table = Table("version", "runtime", "artifact", "size", "sha256", "aliases", "deployed")
    for version in model["versions"]:
        table.add_row(
            str(version["version"]),
            version["runtime"],
            version["artifact"]["filename"],
            str(version["artifact"]["size"]),
            version["artifact"]["sha256"][:12],
            ", ".join(version["aliases"]),
            "yes" if version["deployed"] else "",
        )
    console().print(table)


@app.command()
def register(
    name: str = typer.Argument(..., help="Model name (created if new)"),
    artifact: Path = typer.Argument(..., exists=True, dir_okay=False, help="Model file"),
    runtime: str | None = typer.Option(None, help="Runtime; guessed from the file name"),
    task: str = typer.Option("other", help="Task of a new model"),
    description: str = typer.Option("", help="Description"),
    allow_code: bool = typer.Option(False, help="Allow formats that run code (pickle, .py)"),
    url: str = UrlOption,
    key: str | None = KeyOption,
) -> None:
    """Upload a model file as a new version."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from openmaas.client import ClientError

    with (
        _client(url, key) as client,
        Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=console(),
        ) as progress,
    ):
        bar = progress.add_task(f"uploading {artifact.name}", total=artifact.stat().st_size)
        try:
            version = client.register(
                name,
                artifact,
                task=task,
                description=description,
                runtime=runtime,
                allow_code=allow_code,
                progress=lambda sent, total: progress.update(bar, completed=sent, total=total),
            )
        except ClientError as error:
            progress.stop()
            fail(error)
            return
    console().print(
        f"[green]Registered[/green] {name}/{version['version']} "
        f"({version['runtime']}, sha256 {version['artifact']['sha256'][:12]})"
    )


@app.command()
def delete(
    ref: str = typer.Argument(..., help="name (the whole model) or name/3"),
    url: str = UrlOption,
    key: str | None = KeyOption,
) -> None:
    """Delete a model, or one version of it."""
    from openmaas.client import ClientError

    with _client(url, key) as client:
        try:
            if "/" in ref:
                name, version = ref.split("/", 1)
                client.delete_version(name, version)
            else:
                client.delete_model(ref)
        except ClientError as error:
            fail(error)
            return
    console().print(f"[green]Deleted[/green] {ref}")

"""``openmaas routes apply | list | show | delete``: ModelRoute resources from YAML files."""

from __future__ import annotations

from pathlib import Path

import typer

from openmaas.cli.common import KeyOption, UrlOption, console, fail

app = typer.Typer(
    rich_markup_mode=None,  # plain help: Rich costs more to import than the rest
    help="Traffic routing: ModelRoute resources.",
    no_args_is_help=True,
)
NamespaceOption = typer.Option("default", "-n", "--namespace", help="The route's namespace")


@app.command("apply")
def apply(
    file: Path = typer.Option(
        ..., "-f", "--file", exists=True, dir_okay=False, help="YAML or JSON"
    ),
    url: str = UrlOption,
    key: str | None = KeyOption,
) -> None:
    """Create a route from a file, or replace the route of the same name."""
    import yaml

    from openmaas.client import Client, ClientError

    try:
        documents = [doc for doc in yaml.safe_load_all(file.read_text()) if doc is not None]
    except yaml.YAMLError as error:
        console().print(f"[red]{file} is not valid YAML:[/red] {error}")
        raise typer.Exit(2) from error
    with Client(url, key) as client:
        for document in documents:
            try:
                applied = client.apply_route(document)
            except ClientError as error:
                fail(error)
                return
            status = applied["status"]
            metadata = applied["metadata"]
            where = "" if metadata["namespace"] == "default" else f"{metadata['namespace']}/"
            console().print(
                f"[green]Applied[/green] route {where}{metadata['name']} "
                f"(revision {status['revision']}, {status['phase']}, "
                f"{status['activeRoutes']} active routes)"
            )


@app.command("list")
def list_routes(
    namespace: str | None = typer.Option(None, "-n", "--namespace", help="Only this namespace"),
    url: str = UrlOption,
    key: str | None = KeyOption,
) -> None:
    """List routes with their phase and canary split (every namespace unless -n)."""
    from rich.table import Table

    from openmaas.client import Client, ClientError

    with Client(url, key) as client:
        try:
            routes = client.routes(namespace)
        except ClientError as error:
            fail(error)
            return
    table = Table("name", "namespace", "phase", "active routes", "canary", "revision")
    for route in routes:
        status = route["status"]
        canary = status.get("canary")
        split = (
            f"{canary['state']} {canary['trafficSplit']['canary']}%" if canary is not None else ""
        )
        table.add_row(
            route["metadata"]["name"],
            route["metadata"].get("namespace", "default"),
            status["phase"],
            str(status["activeRoutes"]),
            split,
            str(status["revision"]),
        )
    console().print(table)


@app.command("show")
def show(
    name: str, namespace: str = NamespaceOption, url: str = UrlOption, key: str | None = KeyOption
) -> None:
    """Print one route as YAML, with its status."""
    import yaml

    from openmaas.client import Client, ClientError

    with Client(url, key) as client:
        try:
            route = client.route(name, namespace)
        except ClientError as error:
            fail(error)
            return
    console().print(yaml.safe_dump(route, sort_keys=False), highlight=False)


@app.command("delete")
def delete(
    name: str, namespace: str = NamespaceOption, url: str = UrlOption, key: str | None = KeyOption
) -> None:
    """Delete a route; its name stops resolving at once."""
    from openmaas.client import Client, ClientError

    with Client(url, key) as client:
        try:
            client.delete_route(name, namespace)
        except ClientError as error:
            fail(error)
            return
    console().print(f"[green]Deleted[/green] route {name}")

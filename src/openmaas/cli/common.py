"""What the commands share: the server options, the console, how a failure is told.

Only ``typer`` is imported when the command line is parsed; the HTTP client, Rich and the
server's own modules are imported by the command that needs them, so that every command
starts at once (``python -X importtime -m openmaas.cli --help`` shows what is imported).
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, NoReturn

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from openmaas.client import ClientError

UrlOption = typer.Option("http://127.0.0.1:8000", envvar="OPENMAAS_URL", help="Server URL")
KeyOption = typer.Option(None, envvar="OPENMAAS_KEY", help="Admin API key")


@cache
def console() -> Console:
    from rich.console import Console

    return Console()


def fail(error: ClientError) -> NoReturn:
    console().print(f"[red]{error.status} {error.code}[/red]: {error.message}")
    raise typer.Exit(1)

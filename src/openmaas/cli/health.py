"""``openmaas health``: ask the local server whether it is live (or ready).

For container health checks, where the image has no curl: exits 0 when the server
answers 200, 1 otherwise.
"""

from __future__ import annotations

import typer


def health(
    ready: bool = typer.Option(False, "--ready", help="Ask /readyz instead of /healthz"),
    timeout: float = typer.Option(3.0, help="Seconds to wait for the answer"),
) -> None:
    """Exit 0 if the server on this machine answers its health check, else 1."""
    import httpx

    from openmaas.settings import load_settings

    settings = load_settings()
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    url = f"http://{host}:{settings.port}/{'readyz' if ready else 'healthz'}"
    try:
        answer = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as error:
        typer.echo(f"{url}: {error!r}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{url}: {answer.status_code} {answer.text}")
    if answer.status_code != 200:
        raise typer.Exit(1)

"""``openmaas invoices list | show | close`` and ``openmaas usage export``."""

from __future__ import annotations

from pathlib import Path

import typer

from openmaas.cli.common import KeyOption, UrlOption, console, fail

invoices = typer.Typer(
    rich_markup_mode=None,  # plain help: Rich costs more to import than the rest
    help="Invoices: one per account and closed month, never changed once closed.",
    no_args_is_help=True,
)
usage = typer.Typer(
    rich_markup_mode=None,
    help="Usage, priced at the prices in force when it was used.",
    no_args_is_help=True,
)
OutputOption = typer.Option(None, "-o", "--output", dir_okay=False, help="Write to this file")


def _write(text: str, output: Path | None) -> None:
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        console().print(f"Wrote {output}")


@invoices.command("list")
def list_invoices(
    month: str | None = typer.Option(None, help="Only this month (YYYY-MM)"),
    user_id: int | None = typer.Option(None, help="Only this account (admins)"),
    url: str = UrlOption,
    key: str | None = KeyOption,
) -> None:
    """List invoices: yours, or every account's with an admin key."""
    from rich.table import Table

    from openmaas.client import Client, ClientError

    with Client(url, key) as client:
        try:
            found = client.invoices(month, user_id)
        except ClientError as error:
            fail(error)
    table = Table("number", "month", "account", "total", "currency", "closed")
    for item in found:
        table.add_row(
            item["number"],
            item["month"],
            item["username"],
            item["total"],
            item["currency"],
            item["closed_at"][:19],
        )
    console().print(table)


@invoices.command("show")
def show(
    number: str,
    format: str = typer.Option("table", help="table, json, csv or html"),
    output: Path | None = OutputOption,
    url: str = UrlOption,
    key: str | None = KeyOption,
) -> None:
    """Show an invoice's lines, or write it as JSON, CSV or a printable HTML page."""
    import json

    from openmaas.client import Client, ClientError

    with Client(url, key) as client:
        try:
            if format in ("csv", "html"):
                _write(client.invoice_file(number, format), output)
                return
            invoice = client.invoice(number)
        except ClientError as error:
            fail(error)
    if format == "json":
        _write(json.dumps(invoice, indent=2) + "\n", output)
        return
    from rich.table import Table

    table = Table(
        "kind",
        "application",
        "model",
        "plan",
        "requests",
        "input",
        "output",
        "amount",
        title=f"Invoice {invoice['number']} — {invoice['username']}, {invoice['month']}",
    )
    for line in invoice["lines"]:
        table.add_row(
            line["kind"],
            line["application"],
            line["model"],
            line["plan"],
            str(line["requests"]),
            str(line["input_tokens"]),
            str(line["output_tokens"]),
            line["amount"],
        )
    console().print(table)
    console().print(f"Total: {invoice['total']} {invoice['currency']}")


@invoices.command("close")
def close(
    month: str | None = typer.Option(None, help="YYYY-MM [default: last month]"),
    url: str = UrlOption,
    key: str | None = KeyOption,
) -> None:
    """Close a month now (admins): its invoices are numbered and never change again."""
    from openmaas.client import Client, ClientError

    with Client(url, key) as client:
        try:
            closed = client.close_month(month)
        except ClientError as error:
            fail(error)
    if closed["invoices"]:
        console().print(
            f"Closed {closed['month']}: {len(closed['invoices'])} invoice(s), "
            + ", ".join(closed["invoices"])
        )
    else:
        console().print(f"{closed['month']} was closed already (or had nothing to bill)")


@usage.command("export")
def export(
    format: str = typer.Option("csv", help="csv or json"),
    start: str | None = typer.Option(None, help="First UTC day, YYYY-MM-DD"),
    end: str | None = typer.Option(None, help="Last UTC day, YYYY-MM-DD"),
    user_id: int | None = typer.Option(None, help="Only this account (admins)"),
    output: Path | None = OutputOption,
    url: str = UrlOption,
    key: str | None = KeyOption,
) -> None:
    """Usage by day, application and model, with its prices and amounts."""
    from openmaas.client import Client, ClientError

    with Client(url, key) as client:
        try:
            text = client.usage_export(format, start=start, end=end, user_id=user_id)
        except ClientError as error:
            fail(error)
    _write(text if text.endswith("\n") else text + "\n", output)

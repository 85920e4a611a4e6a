"""``openmaas deploy | undeploy | deployments``."""

from __future__ import annotations

import typer

from openmaas.cli.common import KeyOption, UrlOption, console, fail


def deploy(
    ref: str = typer.Argument(..., help="name, name/3 or name@alias"),
    endpoint: str | None = typer.Option(None, help="Endpoint name [default: <model>-v<n>]"),
    max_batch_size: int = typer.Option(1, help="Dynamic batching: rows per model call"),
    max_wait_ms: float = typer.Option(2.0, help="Dynamic batching: longest wait for company"),
    timeout_s: float = typer.Option(30.0, help="Per-request timeout"),
    engine: str = typer.Option("local", help="local (in the gateway) or ray (Ray Serve)"),
    replicas: int | None = typer.Option(None, help="Ray: a fixed number of replicas"),
    min_replicas: int | None = typer.Option(None, help="Ray: autoscale from this many"),
    max_replicas: int | None = typer.Option(None, help="Ray: autoscale up to this many"),
    replica_cpus: float | None = typer.Option(None, help="Ray: CPUs each replica reserves"),
    url: str = UrlOption,
    key: str | None = KeyOption,
) -> None:
    """Deploy a model version."""
    from openmaas.client import Client, ClientError

    name, version = ref, None
    if "@" in ref:
        name, version = ref.split("@", 1)
    elif "/" in ref:
        name, version = ref.split("/", 1)
    placement: dict[str, object] = {}
    if engine != "local":
        placement["engine"] = engine
    if replicas is not None:
        placement["num_replicas"] = replicas
    if min_replicas is not None or max_replicas is not None:
        scaling = {"min_replicas": min_replicas, "max_replicas": max_replicas}
        placement["autoscaling"] = {k: v for k, v in scaling.items() if v is not None}
    if replica_cpus is not None:
        placement["ray_actor_options"] = {"num_cpus": replica_cpus}
    with Client(url, key) as client, console().status(f"deploying {ref}..."):
        try:
            deployment = client.deploy(
                name,
                version,
                endpoint_name=endpoint,
                max_batch_size=max_batch_size,
                max_wait_ms=max_wait_ms,
                timeout_s=timeout_s,
                **placement,
            )
        except ClientError as error:
            fail(error)
            return
    console().print(
        f"[green]Deployed[/green] {deployment['model_name']}/{deployment['version']} at "
        f"{url}/predict/{deployment['endpoint_name']} ({deployment['status']})"
    )


def undeploy(
    endpoint: str = typer.Argument(..., help="Endpoint name"),
    url: str = UrlOption,
    key: str | None = KeyOption,
) -> None:
    """Undeploy an endpoint (requests in flight finish first)."""
    from openmaas.client import Client, ClientError

    with Client(url, key) as client:
        try:
            client.undeploy(endpoint_name=endpoint)
        except ClientError as error:
            fail(error)
            return
    console().print(f"[green]Undeployed[/green] {endpoint}")


def deployments(
    status: str | None = typer.Option(None, help="deploying, active, failed or undeployed"),
    url: str = UrlOption,
    key: str | None = KeyOption,
) -> None:
    """List deployments with their traffic and latency."""
    from rich.table import Table

    from openmaas.client import Client, ClientError

    with Client(url, key) as client:
        try:
            items = client.deployments(status)
        except ClientError as error:
            fail(error)
            return
    table = Table(
        "endpoint",
        "model",
        "version",
        "status",
        "engine",
        "requests",
        "errors",
        "p50 ms",
        "p99 ms",
    )
    for item in items:
        table.add_row(
            item["endpoint_name"],
            item["model_name"],
            str(item["version"]),
            item["status"],
            _engine(item),
            str(item.get("request_count", "")),
            str(item.get("error_count", "")),
            str(item.get("p50_latency_ms") or ""),
            str(item.get("p99_latency_ms") or ""),
        )
    console().print(table)


def _engine(item: dict[str, object]) -> str:
    """``local``, or ``ray`` with its replicas by state as Ray reports them."""
    ray = item.get("ray")
    if not isinstance(ray, dict):
        config = item.get("config")
        return str(config.get("engine", "local")) if isinstance(config, dict) else "local"
    replicas = ray.get("replicas") or {}
    states = ", ".join(f"{count} {state.lower()}" for state, count in replicas.items())
    return f"ray ({states or str(ray.get('status', '')).lower()})"

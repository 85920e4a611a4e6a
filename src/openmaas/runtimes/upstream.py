"""Remote model servers: where they are, one pooled client each, and their failures.

A remote runtime's artifact is a small JSON file (see ``model_dirs``) with these keys,
which options may override (except the secret ``api_key``):

* ``base_url``: the server, ``http://vllm:8000/v1`` for OpenAI, ``http://triton:8000``
  for the Open Inference Protocol;
* ``model``: the model's name on that server;
* ``api_key``: a bearer token sent upstream (file only: options are shown by the API);
* ``timeout``: seconds one read may take (default 60), so no request or stream hangs;
* ``max_connections``: size of the connection pool (default 100).

Failures become domain errors at this boundary:

    httpx.TimeoutException          -> GatewayTimeout 504 upstream_timeout
    httpx.ConnectError              -> ServiceUnavailable 503 upstream_unavailable
    other httpx.TransportError      -> BadGateway 502 upstream_error
    upstream 400, 422               -> BadRequest 400 upstream_rejected (the client's fault)
    upstream 413                    -> PayloadTooLarge 413
    upstream 429, 503               -> ServiceUnavailable 503 upstream_busy
    any other upstream error status -> BadGateway 502 upstream_error
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from openmaas.domain.errors import (
    BadGateway,
    BadRequest,
    GatewayTimeout,
    PayloadTooLarge,
    ServiceUnavailable,
)
from openmaas.runtimes.base import ArtifactSpec
from openmaas.runtimes.model_dirs import settings_of

_MESSAGE_LIMIT = 500


@dataclass(frozen=True, slots=True)
class Endpoint:
    base_url: str
    model: str | None
    api_key: str | None
    timeout: float
    max_connections: int
    settings: dict[str, Any]


def endpoint_of(spec: ArtifactSpec, *, model_required: bool = False) -> Endpoint:
    settings = settings_of(spec)
    base_url = str(settings.get("base_url") or "")
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise BadRequest(f"invalid base_url {base_url!r}", code="invalid_artifact") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise BadRequest("base_url is an http(s) URL", code="invalid_artifact")
    model = settings.get("model")
    if (model is not None and not isinstance(model, str)) or (model_required and not model):
        raise BadRequest("model is the model's name on the server", code="invalid_artifact")
    try:
        timeout = float(settings.get("timeout", 60))
        connections = int(settings.get("max_connections", 100))
    except (TypeError, ValueError) as exc:
        raise BadRequest(
            "timeout and max_connections are numbers", code="invalid_artifact"
        ) from exc
    if timeout <= 0 or connections < 1:
        raise BadRequest("timeout and max_connections are positive", code="invalid_artifact")
    api_key = settings.get("api_key")
    return Endpoint(
        base_url=base_url.rstrip("/"),
        model=model or None,
        api_key=str(api_key) if api_key else None,
        timeout=timeout,
        max_connections=connections,
        settings=settings,
    )


def client_for(endpoint: Endpoint) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
    return httpx.AsyncClient(
        base_url=endpoint.base_url,
        headers=headers,
        timeout=httpx.Timeout(endpoint.timeout, connect=min(endpoint.timeout, 10.0)),
        limits=httpx.Limits(
            max_connections=endpoint.max_connections,
            max_keepalive_connections=endpoint.max_connections,
        ),
        # Proxies and certificates come from the endpoint, not the process environment.
        trust_env=False,
    )


@asynccontextmanager
async def translated(endpoint: Endpoint) -> AsyncIterator[None]:
    """Turn transport failures talking to ``endpoint`` into domain errors."""
    where = endpoint.base_url
    try:
        yield
    except httpx.TimeoutException as exc:
        raise GatewayTimeout(
            f"the upstream server {where} did not answer within {endpoint.timeout:g}s",
            code="upstream_timeout",
        ) from exc
    except httpx.ConnectError as exc:
        raise ServiceUnavailable(
            f"cannot reach the upstream server {where}: {exc}", code="upstream_unavailable"
        ) from exc
    except httpx.TransportError as exc:
        raise BadGateway(
            f"the upstream server {where} failed: {exc!r}", code="upstream_error"
        ) from exc


def upstream_message(body: bytes) -> str:
    """The message of an error body: OpenAI's ``{"error": {"message"}}``, V2's ``{"error"}``."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")[:_MESSAGE_LIMIT]
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict):
        error = error.get("message", error)
    return str(error)[:_MESSAGE_LIMIT]


def raise_for_status(response: httpx.Response, endpoint: Endpoint) -> None:
    """Raise the domain error for an upstream error status (read the body first)."""
    status = response.status_code
    if status < 400:
        return
    message = f"upstream {status}: {upstream_message(response.content)}"
    if status in (400, 422):
        raise BadRequest(message, code="upstream_rejected")
    if status == 413:
        raise PayloadTooLarge(message, code="upstream_rejected")
    if status in (429, 503):
        retry = response.headers.get("retry-after")
        headers = {"Retry-After": retry} if retry else None
        raise ServiceUnavailable(message, code="upstream_busy", headers=headers)
    raise BadGateway(
        f"the upstream server {endpoint.base_url} answered {message}", code="upstream_error"
    )


def json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise BadGateway("the upstream server sent invalid JSON", code="upstream_error") from exc

"""Remote model servers: where they are, one pooled client each, and their failures.

A remote runtime's artifact is a small JSON file (see ``model_dirs``) with these keys,
which options may override (except the secret ``api_key``):

* ``base_url``: the server, ``http://vllm:8000/v1`` for OpenAI, ``http://triton:8000``
  for the Open Inference Protocol;
* ``model``: the model's name on that server;
* ``api_key``: a bearer token sent upstream (file only: options are shown by the API);
* ``timeout``: seconds one read may take (default 60), so no request or stream hangs;
* ``max_connections``: size of the connection pool (default 100).

Requests go through aiohttp: on the gateway's hot path its client costs a fraction of
httpx's per request. Failures become domain errors at this boundary:

    a timeout (connect or read)     -> GatewayTimeout 504 upstream_timeout
    aiohttp.ClientConnectorError    -> ServiceUnavailable 503 upstream_unavailable
    any other aiohttp.ClientError   -> BadGateway 502 upstream_error
    upstream 400, 422               -> BadRequest 400 upstream_rejected (the client's fault)
    upstream 413                    -> PayloadTooLarge 413
    upstream 429, 503               -> ServiceUnavailable 503 upstream_busy
    any other upstream error status -> BadGateway 502 upstream_error

Only a refusal (400, 422) passes the upstream's own message on, without URLs, its host or
its name for the model; every other failure is told in our words with a reference to
the log line that keeps the upstream's URL and what it said (``openmaas.incidents``).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from openmaas import tracing
from openmaas.domain.errors import (
    BadGateway,
    BadRequest,
    GatewayTimeout,
    PayloadTooLarge,
    ServiceUnavailable,
)
from openmaas.incidents import reported
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
        url = urlsplit(base_url)
        host = url.hostname
    except ValueError as exc:
        raise BadRequest(f"invalid base_url {base_url!r}", code="invalid_artifact") from exc
    if url.scheme not in ("http", "https") or not host:
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


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    status_code: int
    content: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


_JSON = {"Content-Type": "application/json"}


class UpstreamClient:
    """One pooled connection set to one upstream server."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
        self._session = aiohttp.ClientSession(
            headers=headers,
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=min(endpoint.timeout, 10.0),
                sock_read=endpoint.timeout,
            ),
            connector=aiohttp.TCPConnector(limit=endpoint.max_connections),
            # Proxies and certificates come from the endpoint, not the process environment.
            trust_env=False,
        )

    def _url(self, path: str) -> str:
        return f"{self.endpoint.base_url}{path}"

    async def request(self, method: str, path: str, body: Any = None) -> UpstreamResponse:
        data = orjson.dumps(body) if body is not None else None
        headers = _JSON if data else None
        if tracing.active is None:
            return await self._request(method, path, data, headers)
        with tracing.span("openmaas.upstream", self._attributes(method, path)) as current:
            traced = {**(headers or {})}
            tracing.inject(traced)
            answer = await self._request(method, path, data, traced)
            current.set_attribute("http.response.status_code", answer.status_code)
            return answer

    async def _request(
        self, method: str, path: str, data: bytes | None, headers: dict[str, str] | None
    ) -> UpstreamResponse:
        async with (
            translated(self.endpoint),
            self._session.request(method, self._url(path), data=data, headers=headers) as response,
        ):
            return UpstreamResponse(response.status, await response.read(), dict(response.headers))

    def _attributes(self, method: str, path: str) -> dict[str, Any]:
        url = urlsplit(self.endpoint.base_url)
        return {
            "http.request.method": method,
            "server.address": url.hostname or "",
            "server.port": url.port or (443 if url.scheme == "https" else 80),
            "url.path": f"{url.path}{path}",
        }

    @asynccontextmanager
    async def stream(self, path: str, body: Any) -> AsyncIterator[aiohttp.ClientResponse]:
        """A streamed POST; failures while it is read are translated too."""
        span = tracing.start("openmaas.upstream", self._attributes("POST", path))
        headers = _JSON
        if span is not None:
            from opentelemetry import trace

            headers = {**_JSON}
            with trace.use_span(span, end_on_exit=False):
                tracing.inject(headers)
        try:
            async with (
                translated(self.endpoint),
                self._session.post(
                    self._url(path), data=orjson.dumps(body), headers=headers
                ) as response,
            ):
                if span is not None:
                    span.set_attribute("http.response.status_code", response.status)
                yield response
        finally:
            if span is not None:
                span.end()

    async def aclose(self) -> None:
        await self._session.close()


def client_for(endpoint: Endpoint) -> UpstreamClient:
    return UpstreamClient(endpoint)


async def lines_of(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    """The body's lines without their ends, however long (SSE data lines can be large)."""
    pending = b""
    async for piece in response.content.iter_any():
        pending += piece
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.rstrip(b"\r").decode("utf-8", "replace")
    if pending:
        yield pending.rstrip(b"\r").decode("utf-8", "replace")


@asynccontextmanager
async def translated(endpoint: Endpoint) -> AsyncIterator[None]:
    """Turn transport failures talking to ``endpoint`` into domain errors.

    The client learns what kind of failure it was; where the server is and what the
    library said stay in the log (``incidents``).
    """
    try:
        yield
    except TimeoutError as exc:
        raise reported(
            GatewayTimeout,
            f"the upstream server did not answer within {endpoint.timeout:g} s",
            code="upstream_timeout",
            detail=f"{endpoint.base_url}: {exc!r}",
        ) from exc
    except aiohttp.ClientConnectorError as exc:
        raise reported(
            ServiceUnavailable,
            "cannot reach the upstream server",
            code="upstream_unavailable",
            detail=f"{endpoint.base_url}: {exc!r}",
        ) from exc
    except aiohttp.ClientError as exc:
        raise reported(
            BadGateway,
            "the connection to the upstream server failed",
            code="upstream_error",
            detail=f"{endpoint.base_url}: {exc!r}",
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


_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://\S+")


def client_message(text: str, endpoint: Endpoint) -> str:
    """An upstream's message about the client's request, without where the upstream is.

    A refusal (400, 422) explains what was wrong with the request and is worth passing
    on; URLs, the upstream's host and its own name for the model are not.
    """
    host = urlsplit(endpoint.base_url).netloc
    text = _URL.sub("<url>", text)
    if host:
        text = text.replace(host, "<upstream>")
    if endpoint.model:
        name = re.escape(endpoint.model)
        text = re.sub(rf"(?<![\w./-]){name}(?![\w/-])", "<model>", text)
    return text


def raise_for_status(response: UpstreamResponse, endpoint: Endpoint) -> None:
    """Raise the domain error for an upstream error status (read the body first)."""
    status = response.status_code
    if status < 400:
        return
    said = upstream_message(response.content)
    if status in (400, 422):
        message = client_message(said, endpoint)
        raise BadRequest(f"the model refused the request: {message}", code="upstream_rejected")
    detail = f"{endpoint.base_url} answered {status}: {said}"
    if status == 413:
        raise PayloadTooLarge(
            "the request is too large for the upstream server", code="upstream_rejected"
        )
    if status in (429, 503):
        retry = response.headers.get("retry-after")
        headers = {"Retry-After": retry} if retry else None
        raise reported(
            ServiceUnavailable,
            f"the upstream server is busy ({status}); try again later",
            code="upstream_busy",
            detail=detail,
            headers=headers,
        )
    raise reported(
        BadGateway,
        f"the upstream server failed ({status})",
        code="upstream_error",
        detail=detail,
    )


def json_body(response: UpstreamResponse) -> Any:
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        raise BadGateway("the upstream server sent invalid JSON", code="upstream_error") from exc

"""Management routes take JSON whatever the client forgot to say about it.

``curl -d '{...}'`` sends ``application/x-www-form-urlencoded``, and a client may send no
``Content-Type`` at all; FastAPI would then not read the body and answer a 422 about a
missing body. A route that takes a JSON body reads such a body as JSON (a form-encoded
body only when it is JSON indeed); any other media type is a 415 saying what to send.
Routes that take forms or files (artifact uploads) are left as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import params
from starlette.requests import Request
from starlette.responses import Response

from openmaas.api.auth_first import AuthFirstRoute
from openmaas.domain.errors import UnsupportedMediaType

_FORM = "application/x-www-form-urlencoded"


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _as_json(request: Request, body: bytes | None) -> Request:
    headers = [(k, v) for k, v in request.scope["headers"] if k != b"content-type"]
    scope = {**request.scope, "headers": [*headers, (b"content-type", b"application/json")]}
    fixed = Request(scope, request.receive)
    if body is not None:
        fixed._body = body  # already read from the client: handed on, not read again
    return fixed


class JsonBodyRoute(AuthFirstRoute):
    """Also checks the caller before the body is read (``AuthFirstRoute``)."""

    def body_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().body_handler()
        takes_form = any(isinstance(p.field_info, params.Form) for p in self.dependant.body_params)
        if self.body_field is None or takes_form:
            return handler

        async def json_handler(request: Request) -> Response:
            media = _media_type(request)
            if media == "application/json" or media.endswith("+json"):
                return await handler(request)
            if not media:
                return await handler(_as_json(request, None))
            if media == _FORM:
                body = await request.body()
                try:
                    orjson.loads(body)
                except orjson.JSONDecodeError:
                    pass
                else:
                    return await handler(_as_json(request, body))
            raise UnsupportedMediaType(
                f"this route reads JSON; send it with Content-Type: application/json (not {media})",
                code="unsupported_media_type",
            )

        return json_handler

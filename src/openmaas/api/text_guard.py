"""Control characters stop at the edge of the management API, as a 400.

PostgreSQL cannot store a NUL character in a text column (the driver raises), and no name,
description or other stored text has a use for control characters: they only hide what a
value says in logs, pages and terminals. Every request outside the inference hot path is
checked before any route sees it: its path, its query string, and its JSON or form body
(tab, line feed and carriage return are allowed in bodies, for multi-line descriptions).
Inference requests never reach this layer: prompts are not stored, and a NUL in a
model's input is the model's business. Artifact uploads (multipart) check their form
fields in their route.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import parse_qsl, unquote_to_bytes

import orjson
from pydantic import AfterValidator, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openmaas.api.errors import error_response
from openmaas.domain.errors import BadRequest

# C0 controls and DEL; bodies may hold tab, line feed and carriage return.
_ANY_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BODY_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ANY_CONTROL_BYTES = re.compile(rb"[\x00-\x1f\x7f]")
_CHECKED_BODIES = ("application/json", "application/x-www-form-urlencoded", "")


def refuse_control_characters(value: str, where: str, *, multiline: bool = True) -> str:
    """``value`` unchanged, or a 400 when it holds a control character."""
    pattern = _BODY_CONTROL if multiline else _ANY_CONTROL
    if pattern.search(value):
        raise BadRequest(
            f"{where}: control characters (such as NUL) are not allowed",
            code="invalid_characters",
            details={"param": where},
        )
    return value


def check_json(value: Any, where: str) -> None:
    """A 400 when any string in a JSON value (keys included) holds a control character."""
    if isinstance(value, str):
        refuse_control_characters(value, where)
    elif isinstance(value, dict):
        for key, item in value.items():
            refuse_control_characters(key, where)
            check_json(item, f"{where}.{key}" if where != "body" else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_json(item, f"{where}.{index}")


def check_body(media: str, body: bytes) -> None:
    """A 400 when a JSON or form body holds control characters; other bodies pass."""
    if not body:
        return
    if media == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            return  # the route answers what it makes of it
        for key, value in pairs:
            refuse_control_characters(key, "form")
            refuse_control_characters(value, key)
        # A JSON body sent as a form (curl -d) is read as JSON by the routes.
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return  # not JSON: the route says so
    check_json(document, "body")


def check_target(scope: Scope) -> None:
    path: str = scope["path"]
    if _ANY_CONTROL.search(path):
        raise BadRequest(
            "the path holds control characters",
            code="invalid_characters",
            details={"param": "path"},
        )
    query: bytes = scope.get("query_string", b"")
    if query and _ANY_CONTROL_BYTES.search(unquote_to_bytes(query)):
        raise BadRequest(
            "the query string holds control characters",
            code="invalid_characters",
            details={"param": "query"},
        )


class ControlCharacters(StarletteHTTPException):
    """A body refused while the application reads it.

    An HTTP exception, because FastAPI passes those on from the body reader unchanged
    (any other exception there becomes a generic 400); the error handler keeps ``code``.
    """

    def __init__(self, error: BadRequest) -> None:
        super().__init__(400, error.message)
        self.code = error.code
        self.details = error.details


class ControlCharacterGuard:
    """ASGI middleware: the path and query at once; the body as the application reads it.

    The body is checked only once it is whole, and only if a route reads it: a route
    that refuses the caller first (401) never waits for the body.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            check_target(scope)
        except BadRequest as exc:
            request = Request(scope)
            response = error_response(request, 400, exc.code, exc.message, exc.details)
            await response(scope, receive, send)
            return
        media = _media_type(scope)
        if media.endswith("+json"):
            media = "application/json"
        if media not in _CHECKED_BODIES:
            await self.app(scope, receive, send)
            return
        await self.app(scope, _checked(receive, media), send)


def _media_type(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.decode("latin-1").split(";", 1)[0].strip().lower()
    return ""


def _checked(receive: Receive, media: str) -> Receive:
    """``receive``, holding back the body's end until the whole body passed the check."""
    chunks: list[bytes] = []

    async def checked_receive() -> Message:
        message = await receive()
        if message["type"] == "http.request":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                try:
                    check_body(media, b"".join(chunks))
                except BadRequest as exc:
                    raise ControlCharacters(exc) from None
                finally:
                    chunks.clear()
        return message

    return checked_receive


def _plain_name(value: str) -> str:
    if value != value.strip():
        raise ValueError("no spaces before or after a name")
    if _ANY_CONTROL.search(value):
        raise ValueError("no control characters in a name")
    return value


PlainName = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_plain_name)]
"""A name people give (an application, a key): no surrounding spaces, no control characters."""

"""One error handler: every failure leaves as JSON with a stable code and the right status.

Routes under ``/v2`` and KServe V1's ``/v1/models/{name}:predict`` and ``.../infer``
answer in the Open Inference Protocol's shape (``{"error": ...}``); the rest of ``/v1`` in
OpenAI's; everything else as ``{"code", "message", "details"?}``.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from openmaas.domain.errors import OpenMaaSError

logger = logging.getLogger("openmaas.api")

_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}

# A dependency that is down: its component logs the outage once, not every request it fails.
_OUTAGES = frozenset({"database_unavailable", "limits_unavailable", "artifact_store_unavailable"})


_DESCRIPTIONS = {
    400: "A malformed request, or text with control characters (such as NUL).",
    401: "No valid credential (an API key, or a session).",
    403: "The credential may not do this (an admin's route, a plan, a CSRF token).",
    404: "No such resource, or nothing deployed under that name.",
    409: "Conflicts with what exists (a name taken, a resource in use).",
    413: "The body is too large.",
    415: "The body is not in a media type this route reads.",
    422: "A parameter is missing, of the wrong type or out of range; or the model failed on "
    "this input.",
    429: "A limit is reached; retry after Retry-After.",
    502: "An upstream server failed.",
    503: "A dependency (the database, a model, the limits store) is unavailable; retry after "
    "Retry-After.",
    504: "The model did not answer in time.",
}


def declared(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error statuses a route can answer, for its OpenAPI description."""
    return {status: {"description": _DESCRIPTIONS[status]} for status in statuses}


# What any route outside inference can answer: control characters or a malformed body,
# no or the wrong credential, unknown names, conflicts, limits on bodies, validation,
# and a database that does not answer.
MANAGEMENT_ERRORS = declared(400, 401, 403, 404, 409, 413, 415, 422, 503)
# Inference routes: as above, with plan limits and upstream or model failures.
INFERENCE_ERRORS = declared(400, 401, 403, 404, 413, 415, 422, 429, 502, 503, 504)
# Routes anyone may call that read nothing but the query (health, the front door).
PUBLIC_ERRORS = declared(400, 503)


def _kserve_v1(path: str) -> bool:
    """KServe V1's inference paths, which share ``/v1`` with OpenAI's API."""
    return path.startswith("/v1/models/") and path.endswith((":predict", "/infer"))


def error_body(path: str, status: int, code: str, message: str, details: Any = None) -> Any:
    if path.startswith("/v2") or _kserve_v1(path):
        return {"error": message}
    if path.startswith("/v1"):
        kind = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "api_error")
        if status == 429:
            # OpenAI's own: a used-up quota is "insufficient_quota", any other limit
            # "rate_limit_exceeded", as both the type and the code.
            limit = details.get("limit") if isinstance(details, dict) else None
            kind = code = (
                "insufficient_quota" if limit == "monthly_token_quota" else "rate_limit_exceeded"
            )
        return {
            "error": {
                "message": message,
                "type": kind,
                "param": (details or {}).get("param") if isinstance(details, dict) else None,
                "code": code,
            }
        }
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return body


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(request.url.path, status, code, message, details),
        status_code=status,
        headers=headers,
    )


async def openmaas_error(request: Request, exc: Exception) -> JSONResponse:
    """The response for one of our errors; also used by the inference hot path."""
    assert isinstance(exc, OpenMaaSError)
    if exc.status_code >= 500 and exc.code not in _OUTAGES:
        logger.warning("%s %s: %s", request.method, request.url.path, exc.message)
    return error_response(request, exc.status_code, exc.code, exc.message, exc.details, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {
            "loc": [str(part) for part in error.get("loc", ())],
            "message": str(error.get("msg", "")),
            "type": str(error.get("type", "")),
        }
        for error in exc.errors()
    ]
    first = problems[0] if problems else {"loc": [], "message": "invalid request"}
    where = ".".join(part for part in first["loc"] if part != "body") or "body"
    message = f"{where}: {first['message']}"
    param = where if where != "body" else None
    details: dict[str, Any] = {"errors": problems, "param": param}
    return error_response(request, 422, "invalid_request", message, details)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    code = phrase.lower().replace(" ", "_").replace("-", "_")
    message = str(exc.detail) if exc.detail else phrase
    headers = dict(exc.headers) if exc.headers else None
    # Ours, raised where only HTTP exceptions pass (text_guard): their own code and details.
    code = getattr(exc, "code", code)
    details = getattr(exc, "details", None)
    return error_response(request, status, code, message, details, headers=headers)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(request, 500, "internal_error", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(OpenMaaSError, openmaas_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)

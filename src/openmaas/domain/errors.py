"""The one error tree of OpenMaaS.

Every error a client can cause is an ``OpenMaaSError`` that carries its HTTP status and
a stable ``code``; the API layer turns it into the JSON shape of the protocol the client
spoke (plain JSON, V2 or OpenAI). Third-party exceptions are translated at the boundary
with ``raise SomeError(...) from exc``.

    OpenMaaSError (500 internal_error)
    ├── BadRequest (400 bad_request)
    ├── Unauthorized (401 unauthorized)
    ├── Forbidden (403 forbidden)
    ├── NotFound (404 not_found)
    ├── Conflict (409 conflict)
    ├── PayloadTooLarge (413 payload_too_large)
    ├── UnsupportedMediaType (415 unsupported_media_type)
    ├── Unprocessable (422 invalid_request)
    ├── RateLimited (429 rate_limited)
    ├── BadGateway (502 bad_gateway)
    ├── ServiceUnavailable (503 unavailable)
    └── GatewayTimeout (504 timeout)
"""

from __future__ import annotations

from typing import Any, ClassVar


class OpenMaaSError(Exception):
    status_code: ClassVar[int] = 500
    default_code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = details or {}
        self.headers = headers or {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class BadRequest(OpenMaaSError):
    status_code = 400
    default_code = "bad_request"


class Unauthorized(OpenMaaSError):
    status_code = 401
    default_code = "unauthorized"


class Forbidden(OpenMaaSError):
    status_code = 403
    default_code = "forbidden"


class NotFound(OpenMaaSError):
    status_code = 404
    default_code = "not_found"


class Conflict(OpenMaaSError):
    status_code = 409
    default_code = "conflict"


class PayloadTooLarge(OpenMaaSError):
    status_code = 413
    default_code = "payload_too_large"


class UnsupportedMediaType(OpenMaaSError):
    status_code = 415
    default_code = "unsupported_media_type"


class Unprocessable(OpenMaaSError):
    status_code = 422
    default_code = "invalid_request"


class RateLimited(OpenMaaSError):
    status_code = 429
    default_code = "rate_limited"


class BadGateway(OpenMaaSError):
    status_code = 502
    default_code = "bad_gateway"


class ServiceUnavailable(OpenMaaSError):
    status_code = 503
    default_code = "unavailable"


class GatewayTimeout(OpenMaaSError):
    status_code = 504
    default_code = "timeout"

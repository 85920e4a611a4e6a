"""Dependencies shared by the HTTP routes: the platform, the caller, the admin check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from openmaas.access import credential_from_headers
from openmaas.access.sessions import CSRF_HEADER, SESSION_COOKIE, csrf_matches
from openmaas.domain.accounts import Principal
from openmaas.domain.errors import Forbidden, Unauthorized
from openmaas.platform import Platform

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Ids in paths and queries are bounded to what every database's INTEGER holds, so an
# absurd id is a 422 instead of a database overflow error.
MAX_ID = 2_147_483_647
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]


async def get_platform(request: Request) -> Platform:
    # async: a plain function dependency would run in a worker thread on every request.
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(get_platform)]


async def current_principal(request: Request, platform: PlatformDep) -> Principal:
    """The caller of a management route: a key in the headers, else a session cookie.

    Found once per request: routes with a body look before reading it (``auth_first``).
    """
    known: Principal | None = getattr(request.state, "principal", None)
    if known is not None:
        return known
    principal = await _identify(request, platform)
    request.state.principal = principal
    return principal


async def _identify(request: Request, platform: Platform) -> Principal:
    key = credential_from_headers(request.headers)
    if key is not None:
        return await platform.access.authenticate(key)
    found = await platform.access.identify_session_now(request.cookies.get(SESSION_COOKIE))
    if found is None:
        raise Unauthorized(
            "log in, or send an API key (Authorization: Bearer <key> or X-API-Key)",
            code="missing_credentials",
        )
    principal, session = found
    # Cookies ride along on cross-site requests; a write must also prove it read the page.
    if request.method not in _SAFE_METHODS and not csrf_matches(
        session, request.headers.get(CSRF_HEADER)
    ):
        raise Forbidden("missing or wrong CSRF token (X-CSRF-Token)", code="csrf_failed")
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


async def require_admin(principal: PrincipalDep) -> Principal:
    if not principal.is_admin:
        raise Forbidden("this route needs an admin", code="admin_required")
    return principal


AdminDep = Annotated[Principal, Depends(require_admin)]

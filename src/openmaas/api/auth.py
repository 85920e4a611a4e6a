"""Sign-up, login and logout with a session cookie, password change, and single sign-on."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from openmaas.access.oidc import STATE_MAX_AGE
from openmaas.access.sessions import SESSION_COOKIE
from openmaas.api.deps import PlatformDep, PrincipalDep
from openmaas.api.errors import MANAGEMENT_ERRORS
from openmaas.api.json_body import JsonBodyRoute
from openmaas.domain.accounts import User
from openmaas.domain.errors import Forbidden, Unauthorized
from openmaas.domain.usernames import normalise
from openmaas.platform import Platform

router = APIRouter(
    route_class=JsonBodyRoute, prefix="/auth", tags=["accounts"], responses=MANAGEMENT_ERRORS
)

_OIDC_COOKIE = "openmaas_oidc"
USERNAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,63}$"
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


# NFKC first: the full-width form of "admin" becomes the "admin" it looks like.
Username = Annotated[
    str,
    BeforeValidator(lambda v: normalise(v) if isinstance(v, str) else v),
    Field(pattern=USERNAME),
]
SIGNUP_RECEIVED = (
    "If the username and the e-mail address were free, the account exists now: log in to "
    "use it. Otherwise choose others (a name that looks like a taken one is taken too)."
)


class Signup(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Username
    email: str = Field(max_length=255, pattern=EMAIL)
    # Bounded above: argon2 of a megabyte-long "password" is a cheap way to burn CPU.
    password: str = Field(min_length=8, max_length=256)


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=255, description="Username or e-mail")
    password: str = Field(min_length=1, max_length=256)


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    current_password: str | None = Field(None, max_length=256)
    new_password: str = Field(min_length=8, max_length=256)


def start_session(platform: Platform, response: Response, user: User) -> dict[str, Any]:
    value, session = platform.access.sessions.issue(user.id)
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=platform.settings.session_max_age,
        httponly=True,
        samesite="lax",
        secure=platform.settings.secure_cookies,
        path="/",
    )
    return {"user": user.to_dict(), "csrf_token": session.csrf_token}


@router.post("/signup", status_code=202)
async def signup(body: Signup, platform: PlatformDep) -> dict[str, Any]:
    """The same answer whether the account was created or its name or e-mail address was
    taken, so that sign-up does not tell who has an account; log in to find out."""
    await platform.accounts.signup(username=body.username, email=body.email, password=body.password)
    return {
        "status": "received",
        "pending_approval": platform.settings.signup == "approval",
        "message": SIGNUP_RECEIVED,
    }


@router.post("/login")
async def login(
    body: Login, request: Request, platform: PlatformDep, response: Response
) -> dict[str, Any]:
    user = await platform.accounts.login(
        login=body.username, password=body.password, address=client_address(request)
    )
    return start_session(platform, response, user)


@router.post("/logout", status_code=204)
async def logout(request: Request, platform: PlatformDep) -> Response:
    """Ends every session of the user on the server: a copy of the cookie stops working."""
    await end_session(platform, request)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


async def end_session(platform: Platform, request: Request) -> None:
    try:
        found = await platform.access.identify_session_now(request.cookies.get(SESSION_COOKIE))
    except Forbidden:  # a disabled account: its sessions do not work anyway
        return
    if found is not None and found[0].user_id is not None:
        await platform.accounts.end_sessions(found[0].user_id)


@router.get("/session")
async def current_session(request: Request, platform: PlatformDep) -> dict[str, Any]:
    """The logged-in user and the CSRF token pages put in their forms."""
    found = await platform.access.identify_session_now(request.cookies.get(SESSION_COOKIE))
    if found is None:
        raise Unauthorized("not logged in", code="missing_credentials")
    principal, session = found
    user = await platform.accounts.get(principal.user_id or 0)
    return {"user": user.to_dict(), "csrf_token": session.csrf_token}


@router.post("/password")
async def change_password(
    body: PasswordChange, principal: PrincipalDep, platform: PlatformDep, response: Response
) -> dict[str, Any]:
    """Change the password; every other session of the user ends, this one is renewed."""
    if principal.user_id is None:
        raise Unauthorized("the admin key has no password", code="no_password")
    await platform.accounts.change_password(
        user_id=principal.user_id, current=body.current_password, new=body.new_password
    )
    return start_session(platform, response, await platform.accounts.get(principal.user_id))


def _safe_next(target: str | None) -> str:
    # Only paths on this site: an absolute URL here would make the login an open redirect.
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/oidc/login")
async def oidc_login(
    request: Request, platform: PlatformDep, next: str | None = Query(None, max_length=2048)
) -> RedirectResponse:
    redirect_uri = str(request.url_for("oidc_callback"))
    url, state = await platform.oidc.start(redirect_uri)
    response = RedirectResponse(url, status_code=302)
    response.set_cookie(
        _OIDC_COOKIE,
        platform.access.sessions.dump_state({**state, "next": _safe_next(next)}),
        max_age=STATE_MAX_AGE,
        httponly=True,
        # Lax still sends it on the provider's top-level redirect back to the callback.
        samesite="lax",
        secure=platform.settings.secure_cookies,
        path="/auth/oidc",
    )
    return response


@router.get("/oidc/callback", name="oidc_callback")
async def oidc_callback(
    request: Request,
    platform: PlatformDep,
    code: str | None = Query(None, max_length=4096),
    state: str | None = Query(None, max_length=512),
    error: str | None = Query(None, max_length=512),
) -> RedirectResponse:
    if error or not code or not state:
        raise Unauthorized(f"single sign-on failed: {error or 'no code'}", code="sso_refused")
    saved = platform.access.sessions.load_state(
        request.cookies.get(_OIDC_COOKIE), max_age=STATE_MAX_AGE
    )
    identity = await platform.oidc.finish(
        code=code, state=state, saved=saved, redirect_uri=str(request.url_for("oidc_callback"))
    )
    user = await platform.accounts.sso_user(
        subject=identity.subject,
        email=identity.email,
        email_verified=identity.email_verified,
        username=identity.username,
    )
    response = RedirectResponse(_safe_next((saved or {}).get("next")), status_code=303)
    start_session(platform, response, user)
    response.delete_cookie(_OIDC_COOKIE, path="/auth/oidc")
    return response

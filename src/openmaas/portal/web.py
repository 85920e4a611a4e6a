"""What every page shares: templates, the logged-in user, CSRF-checked forms, flashes.

Pages are rendered on the server with Jinja2 (autoescaped). A page reads the session
cookie of the JSON API; a form posts the session's CSRF token in a hidden field, and a
POST without the right one is refused before anything else is looked at.
"""

from __future__ import annotations

import contextlib
import hmac
import re
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from openmaas.access.sessions import CSRF_FIELD, SESSION_COOKIE, Session, csrf_matches
from openmaas.domain.accounts import Principal
from openmaas.domain.errors import Forbidden, OpenMaaSError, Unprocessable
from openmaas.platform import Platform

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["urldecode"] = unquote
_FLASH_COOKIE = "openmaas_flash"
_FORM_COOKIE = "openmaas_form"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")


@dataclass(frozen=True, slots=True)
class Visitor:
    principal: Principal
    session: Session

    @property
    def is_admin(self) -> bool:
        return self.principal.is_admin


class LoginRequired(Exception):
    """Raised by a page for an anonymous visitor: answered with a redirect to the login."""


def platform_of(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def visitor(request: Request) -> Visitor | None:
    try:
        found = platform_of(request).access.identify_session(request.cookies.get(SESSION_COOKIE))
    except OpenMaaSError:  # a disabled or unapproved account has no pages
        return None
    return Visitor(*found) if found else None


def logged_in(request: Request) -> Visitor:
    found = visitor(request)
    if found is None:
        raise LoginRequired
    return found


def admin(request: Request) -> Visitor:
    found = logged_in(request)
    if not found.is_admin:
        raise Forbidden("this page is for admins", code="admin_required")
    return found


async def form(request: Request, who: Visitor) -> dict[str, str]:
    """The posted form, once its CSRF token has been checked against the session."""
    data = await request.form()
    fields = {k: v for k, v in data.items() if isinstance(v, str)}
    if not csrf_matches(who.session, fields.get(CSRF_FIELD)):
        raise Forbidden("this form is stale or forged (CSRF token)", code="csrf_failed")
    return fields


async def anonymous_form(request: Request) -> dict[str, str]:
    """A form posted before logging in (log in, sign up): its token must match the one
    its page set in a cookie, so another site cannot log a visitor in to its account."""
    data = await request.form()
    fields = {k: v for k, v in data.items() if isinstance(v, str)}
    expected = request.cookies.get(_FORM_COOKIE)
    posted = fields.get(CSRF_FIELD)
    # Compared as bytes: compare_digest refuses str with characters beyond ASCII.
    if not expected or not posted or not hmac.compare_digest(_raw(expected), _raw(posted)):
        raise Forbidden("this form is stale or forged (CSRF token)", code="csrf_failed")
    return fields


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _form_token(request: Request) -> str:
    """The pre-login CSRF token of this browser (double-submit: cookie and form field)."""
    token = request.cookies.get(_FORM_COOKIE, "")
    return token if _TOKEN.fullmatch(token) else secrets.token_urlsafe(24)


def render(
    request: Request,
    template: str,
    who: Visitor | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    flash = request.cookies.get(_FLASH_COOKIE)
    token = who.session.csrf_token if who else _form_token(request)
    response = templates.TemplateResponse(
        request,
        template,
        {
            "who": who,
            "csrf_token": token,
            "flash": flash,
            "oidc": platform_of(request).oidc.enabled,
            **context,
        },
        status_code=status_code,
    )
    if flash:
        response.delete_cookie(_FLASH_COOKIE, path="/")
    if who is None:
        response.set_cookie(
            _FORM_COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=platform_of(request).settings.secure_cookies,
            path="/portal",
        )
    return response


def done(url: str, message: str) -> RedirectResponse:
    """POST-redirect-GET, with a message for the next page."""
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(_FLASH_COOKIE, quote(message), max_age=60, httponly=True, samesite="lax")
    return response


def to_login(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/portal/login?next={quote(target)}", status_code=303)


def error_page(request: Request, exc: OpenMaaSError) -> HTMLResponse:
    return render(
        request,
        "error.html",
        visitor(request),
        status_code=exc.status_code,
        status=exc.status_code,
        message=exc.message,
        code=exc.code,
    )


class PageRoute(APIRoute):
    """Pages answer in HTML: an anonymous visitor is sent to the login, errors get a page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            # The pages read the session synchronously; a user another worker created
            # moments ago is looked up first (see ``identify_session_now``). A disabled
            # account is the pages' own business (``visitor``).
            with contextlib.suppress(OpenMaaSError):
                cookie = request.cookies.get(SESSION_COOKIE)
                await platform_of(request).access.identify_session_now(cookie)
            try:
                return await handler(request)
            except LoginRequired:
                return to_login(request)
            except OpenMaaSError as exc:
                return error_page(request, exc)
            except RequestValidationError:
                return error_page(request, Unprocessable("the address or form is not valid"))

        return page

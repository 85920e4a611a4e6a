"""Browser protections of the portal and console pages, and Secure cookies over HTTPS.

The pages load their script and style sheet from ``/portal/static`` and nothing inline,
so the policy allows only this origin: an injected ``<script>`` or ``style`` attribute
does not run, no other site may frame the pages (clickjacking), and a browser never
guesses a response's type. API responses (JSON) carry ``nosniff`` too.

A cookie set on a request that came over HTTPS is marked ``Secure`` (the browser then
never sends it over plain HTTP); ``OPENMAAS_SECURE_COOKIES=true`` marks every cookie.
Whether a request came over HTTPS is the connection's scheme, or the ``X-Forwarded-Proto``
of a proxy listed in ``OPENMAAS_TRUSTED_PROXIES`` (``trusted_proxies`` below).
"""

from __future__ import annotations

from typing import Any, cast

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
_PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
_PAGES = ("/portal", "/console", "/docs", "/redoc")


def _is_page(path: str) -> bool:
    return path == "/" or any(path == p or path.startswith(p + "/") for p in _PAGES)


class SecurityHeaders:
    """Adds the headers above to every response of the full application."""

    def __init__(self, app: ASGIApp, *, secure_cookies: bool) -> None:
        self.app = app
        self.secure_cookies = secure_cookies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        page = _is_page(scope["path"])
        secure = self.secure_cookies or scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                if page:
                    for name, value in _PAGE_HEADERS.items():
                        # The API docs pages set a policy of their own (openapi.py).
                        headers.setdefault(name, value)
                if secure:
                    _secure_cookies(headers)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _secure_cookies(headers: MutableHeaders) -> None:
    cookies = headers.getlist("set-cookie")
    if not cookies:
        return
    del headers["set-cookie"]
    for cookie in cookies:
        attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
        headers.append("set-cookie", cookie if "secure" in attributes else f"{cookie}; Secure")


def trusted_proxies(app: ASGIApp, proxies: list[str]) -> ASGIApp:
    """``app`` behind uvicorn's proxy header handling, believing only ``proxies``.

    The server itself (``openmaas serve``) trusts nobody's headers, so a client can never
    claim HTTPS or another address by sending ``X-Forwarded-*`` itself.
    """
    if not proxies:
        return app
    # uvicorn types ASGI apps more narrowly than Starlette; they are the same protocol.
    wrapped: Any = ProxyHeadersMiddleware(cast(Any, app), trusted_hosts=proxies)
    return cast(ASGIApp, wrapped)

"""Routes that check the caller before the body is read.

FastAPI reads and parses a route's body (JSON, forms, uploaded files spooled to disk)
before it solves the route's dependencies, so ``current_principal`` and ``require_admin``
would only answer 401 or 403 after an anonymous client had sent, and the server stored,
the whole body. A route of this class runs those checks first when the route takes them;
the dependencies then reuse the principal found.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from openmaas.api.deps import current_principal, get_platform, require_admin

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def _calls(dependant: Dependant) -> set[Any]:
    """Every dependency a route's dependant calls, however deep."""
    found = set()
    for sub in dependant.dependencies:
        found.add(sub.call)
        found |= _calls(sub)
    return found


class AuthFirstRoute(APIRoute):
    def body_handler(self) -> Handler:
        """The handler that reads the body (FastAPI's; subclasses wrap it)."""
        return super().get_route_handler()

    def get_route_handler(self) -> Handler:
        handler = self.body_handler()
        calls = _calls(self.dependant)
        if self.body_field is None or current_principal not in calls:
            return handler
        admin_only = require_admin in calls

        async def authenticated(request: Request) -> Response:
            principal = await current_principal(request, await get_platform(request))
            if admin_only:
                await require_admin(principal)
            return await handler(request)

        return authenticated

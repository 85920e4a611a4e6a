"""The inference routes served without FastAPI's routing and dependency injection.

``POST /predict``, ``/predict/{endpoint}``, the V2 ``.../infer`` routes, the OpenAI
``/v1`` completions and embeddings, and KServe V1's ``/v1/models/{name}:predict`` and
seed 003's ``/v1/models/{name}/infer`` are the hot
path: most of a small model's request time used to go to routing through every route,
solving dependencies (the synchronous ``get_platform`` ran in a worker thread) and
FastAPI's per-request machinery. This middleware sits inside the body size limit and CORS,
so 413s and CORS headers are unchanged, and calls the very same handlers the FastAPI routes
call: the gate, the limits, metering and error shapes are the same code. The FastAPI routes
stay registered, so the API docs still describe them. The application's ``__call__``
(``openmaas.app.OpenMaaSApp``) sends these requests here before FastAPI sees them: past its
own middleware (error pages, telemetry, a second body limit) too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from openmaas.access import credential_from_headers
from openmaas.api import kserve_v1, openai_api, predict, v2
from openmaas.api.admission import IDENTITY
from openmaas.api.errors import error_response, openmaas_error
from openmaas.domain.errors import OpenMaaSError
from openmaas.platform import Platform

Handler = Callable[[Platform, Request], Awaitable[Response]]
logger = logging.getLogger("openmaas")
HANDLER = "openmaas.handler"
"""The scope key of the handler the application's entry found: routed once, not twice."""


_OPENAI: dict[str, Handler] = {
    "/v1/chat/completions": lambda platform, request: openai_api.chat_completions(
        request, platform
    ),
    "/v1/completions": lambda platform, request: openai_api.completions(request, platform),
    "/v1/embeddings": lambda platform, request: openai_api.embeddings(request, platform),
}


def _route(path: str) -> Handler | None:
    """The handler of an inference path, with the path parameters bound; else None.

    Parameters match like Starlette's ``{name}``: one non-empty segment.
    """
    parts = path.split("/")
    count = len(parts)
    if count < 2:
        return None
    if parts[1] == "v2":
        if count == 5 and parts[2] == "models" and parts[4] == "infer" and parts[3]:
            name = parts[3]
            return lambda platform, request: v2.infer(platform, request, name, None)
        if (
            count == 7
            and parts[2] == "models"
            and parts[4] == "versions"
            and parts[6] == "infer"
            and parts[3]
            and parts[5]
        ):
            name, version = parts[3], parts[5]
            return lambda platform, request: v2.infer(platform, request, name, version)
        return None
    if parts[1] == "v1":
        if count == 5 and parts[2] == "models" and parts[4] == "infer" and parts[3]:
            name = parts[3]
            return lambda platform, request: kserve_v1.infer(platform, request, name)
        if count == 4 and parts[2] == "models" and parts[3].endswith(":predict"):
            name = parts[3].removesuffix(":predict")
            if name:
                return lambda platform, request: kserve_v1.predict(platform, request, name)
        return _OPENAI.get(path)
    if parts[1] == "predict":
        if count == 2:
            return lambda platform, request: predict.predict(request, platform)
        if count == 3 and parts[2]:
            endpoint = parts[2]
            return lambda platform, request: predict.predict_endpoint(endpoint, request, platform)
    return None


def inference_handler(scope: Scope) -> Handler | None:
    """The handler when ``scope`` is an inference request, else None."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return _route(path)


class InferenceHotPath:
    """The inference handlers as an ASGI app, answering errors in each protocol's shape."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = scope.get(HANDLER) or inference_handler(scope)
        assert handler is not None, "only inference requests are sent here"
        request = Request(scope, receive)
        try:
            # The key is checked before the body is read or parsed and before the model
            # is looked up: a stranger sends no body to the server, and an unknown model
            # and a deployed one both answer 401.
            identity = self.platform.access.identify_key(credential_from_headers(request.headers))
            scope[IDENTITY] = identity
            response = await handler(self.platform, request)
        except OpenMaaSError as exc:
            response = await openmaas_error(request, exc)
        except Exception:
            # What FastAPI's outermost middleware does for the other routes.
            logger.exception("unhandled error on POST %s", scope["path"])
            response = error_response(request, 500, "internal_error", "internal server error")
        await response(scope, receive, send)

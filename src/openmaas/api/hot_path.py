"""The inference routes served without FastAPI's routing and dependency injection.

``POST /predict``, ``/predict/{endpoint}``, the V2 ``.../infer`` routes and the OpenAI
``/v1`` completions and embeddings are the hot
path: most of a small model's request time used to go to routing through every route,
solving dependencies (the synchronous ``get_platform`` ran in a worker thread) and
FastAPI's per-request machinery. This middleware sits inside the body size limit and CORS,
so 413s and CORS headers are unchanged, and calls the very same handlers the FastAPI routes
call: the gate, the limits, metering and error shapes are the same code. The FastAPI routes
stay registered, so the API docs still describe them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from openmaas.api import openai_api, predict, v2
from openmaas.api.errors import openmaas_error
from openmaas.domain.errors import OpenMaaSError
from openmaas.platform import Platform

Handler = Callable[[Platform, Request], Awaitable[Response]]


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
        return _OPENAI.get(path)
    if parts[1] == "predict":
        if count == 2:
            return lambda platform, request: predict.predict(request, platform)
        if count == 3 and parts[2]:
            endpoint = parts[2]
            return lambda platform, request: predict.predict_endpoint(endpoint, request, platform)
    return None


class InferenceHotPath:
    def __init__(self, app: ASGIApp, *, platform: Platform) -> None:
        self.app = app
        self.platform = platform

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = None
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            root = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            handler = _route(path)
        if handler is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await handler(self.platform, request)
        except OpenMaaSError as exc:
            response = await openmaas_error(request, exc)
        await response(scope, receive, send)

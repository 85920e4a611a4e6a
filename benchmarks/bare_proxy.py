"""The floor for a gateway: the cheapest thing that could stand in OpenMaaS's place.

FastAPI, one pooled aiohttp session and a dictionary key check: no plans, no limits, no
metering, no routing. The body is passed through unread; a streamed answer is relayed
chunk by chunk. ``python benchmarks/bare_proxy.py PORT UPSTREAM_URL KEY``.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse


def create_app(upstream: str, keys: dict[str, str]) -> FastAPI:
    state: dict[str, aiohttp.ClientSession] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=1000, keepalive_timeout=60)
        state["session"] = aiohttp.ClientSession(connector=connector)
        yield
        await state["session"].close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        authorization = request.headers.get("authorization", "")
        if keys.get(authorization.removeprefix("Bearer ")) is None:
            return JSONResponse({"error": "invalid key"}, status_code=401)
        body = await request.body()
        upstream_response = await state["session"].post(
            f"{upstream}/chat/completions",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        content_type = upstream_response.headers.get("Content-Type", "application/json")
        if content_type.startswith("text/event-stream"):

            async def relay() -> AsyncIterator[bytes]:
                try:
                    async for chunk in upstream_response.content.iter_any():
                        yield chunk
                finally:
                    upstream_response.release()

            return StreamingResponse(relay(), media_type="text/event-stream")
        payload = await upstream_response.read()
        upstream_response.release()
        return Response(payload, status_code=upstream_response.status, media_type=content_type)

    return app


if __name__ == "__main__":
    port, upstream, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    uvicorn.run(
        create_app(upstream, {key: "bench"}),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
    )

"""Liveness, readiness and the front door."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse

from openmaas import __version__
from openmaas.api.deps import PlatformDep
from openmaas.api.errors import PUBLIC_ERRORS

router = APIRouter(tags=["system"], responses=PUBLIC_ERRORS)


@router.get("/healthz")
@router.get("/health/live")
async def live() -> dict[str, str]:
    """The process runs and answers: nothing else is checked (a liveness probe)."""
    return {"status": "live"}


@router.get("/readyz", responses={503: {"description": "not ready; the body says why"}})
@router.get("/health/ready", responses={503: {"description": "not ready; the body says why"}})
async def ready(platform: PlatformDep) -> JSONResponse:
    """Whether to send this process traffic (a readiness probe): 503 while starting,
    stopping, or with the database unreachable or its schema behind."""
    readiness = await platform.health.readiness()
    return JSONResponse(
        readiness.to_dict(),
        status_code=200 if readiness.ready else 503,
        headers=None if readiness.ready else {"Retry-After": "5", "Cache-Control": "no-store"},
    )


@router.get("/", response_model=None)
async def index(request: Request) -> dict[str, Any] | RedirectResponse:
    """A browser is sent to the portal; an API client gets where the API is described."""
    if "text/html" in request.headers.get("accept", ""):
        return RedirectResponse("/portal", status_code=303)
    return {
        "name": "OpenMaaS",
        "version": __version__,
        "docs": "/docs",
        "openapi": "/openapi.json",
    }

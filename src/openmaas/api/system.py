"""Liveness, readiness and the front door."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse
from sqlalchemy import text

from openmaas import __version__
from openmaas.api.deps import PlatformDep
from openmaas.domain.errors import ServiceUnavailable

router = APIRouter(tags=["system"])


@router.get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "live"}


@router.get("/health/ready")
async def ready(platform: PlatformDep) -> dict[str, str]:
    try:
        async with platform.db.session() as session:
            await session.execute(text("SELECT 1"))
    except Exception as exc:
        raise ServiceUnavailable("the database is unreachable", code="database_down") from exc
    return {"status": "ready"}


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

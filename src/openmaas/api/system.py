"""Liveness, readiness and the front door."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
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


@router.get("/")
async def index() -> dict[str, Any]:
    return {
        "name": "OpenMaaS",
        "version": __version__,
        "docs": "/docs",
        "openapi": "/openapi.json",
    }

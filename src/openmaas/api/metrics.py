"""Prometheus scrape endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from openmaas.api.deps import PlatformDep

router = APIRouter(tags=["system"])


@router.get("/metrics")
async def metrics(platform: PlatformDep) -> Response:
    payload = generate_latest(platform.serving.metrics.registry)
    return Response(payload, media_type=CONTENT_TYPE_LATEST)

"""Prometheus scrape endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from openmaas.api.deps import PlatformDep

router = APIRouter(tags=["system"])


@router.get("/metrics")
async def metrics(platform: PlatformDep) -> Response:
    metrics_dir = platform.settings.metrics_dir
    if metrics_dir is None:
        registry = platform.serving.metrics.registry
    else:
        # Several workers: whichever one answers reads every worker's files.
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(metrics_dir))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

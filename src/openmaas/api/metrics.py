"""Prometheus scrape endpoint: for the admin key, unless ``OPENMAAS_METRICS_PUBLIC=true``.

The metrics name every deployed model and plan and count their traffic, which is more
than an anonymous caller should learn; a scraper sends the admin key as a bearer token
(Prometheus' ``authorization`` setting).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from openmaas.api.deps import PlatformDep, current_principal, require_admin

router = APIRouter(tags=["system"])


@router.get(
    "/metrics",
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
        401: {"description": "No valid credential (unless OPENMAAS_METRICS_PUBLIC=true)."},
        403: {"description": "The credential is not an admin's."},
    },
)
async def metrics(request: Request, platform: PlatformDep) -> Response:
    if not platform.settings.metrics_public:
        await require_admin(await current_principal(request, platform))
    metrics_dir = platform.settings.metrics_dir
    if metrics_dir is None:
        registry = platform.serving.metrics.registry
    else:
        # Several workers: whichever one answers reads every worker's files.
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(metrics_dir))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

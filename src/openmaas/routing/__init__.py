"""Traffic routing: the ModelRoute resource (matches, weights, retries, fallback, canary)."""

from openmaas.routing.metrics import RouteMetrics
from openmaas.routing.service import RoutingService

__all__ = ["RouteMetrics", "RoutingService"]

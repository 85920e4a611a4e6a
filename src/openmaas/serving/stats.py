"""Per-deployment request statistics kept in memory (counts and latency percentiles)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Percentiles over the most recent requests: enough for a stable p99, cheap to keep.
_WINDOW = 4096


@dataclass(slots=True)
class EndpointStats:
    request_count: int = 0
    error_count: int = 0
    total_latency_ms: float = 0.0
    recent_ms: deque[float] = field(default_factory=lambda: deque(maxlen=_WINDOW))

    def observe(self, latency_ms: float, *, error: bool) -> None:
        self.request_count += 1
        if error:
            self.error_count += 1
        self.total_latency_ms += latency_ms
        self.recent_ms.append(latency_ms)

    def to_dict(self) -> dict[str, Any]:
        percentiles: list[float | None] = [None, None, None]
        if self.recent_ms:
            values = np.percentile(np.fromiter(self.recent_ms, float), [50, 95, 99])
            percentiles = [round(float(v), 3) for v in values]
        average = self.total_latency_ms / self.request_count if self.request_count else None
        return {
            "request_count": self.request_count,
            "error_count": self.error_count,
            "avg_latency_ms": round(average, 3) if average is not None else None,
            "p50_latency_ms": percentiles[0],
            "p95_latency_ms": percentiles[1],
            "p99_latency_ms": percentiles[2],
        }

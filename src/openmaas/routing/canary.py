"""Automated canary analysis: one decision per closed interval, from the pooled counts.

Each interval the canary's success rate (answers that were not server errors or
timeouts) is compared with ``analysis.threshold``: below it, the canary is rolled back
(share 0); at or above it, its share grows by its initial share, up to 100 (promoted).
An interval with fewer than ``minRequests`` canary requests decides nothing and the
window runs on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from openmaas.domain.routes import Canary

PROGRESSING, PROMOTED, ROLLED_BACK = "progressing", "promoted", "rolled_back"


@dataclass(frozen=True, slots=True)
class Decision:
    weight: int
    state: str
    condition: dict[str, Any]


def decide(canary: Canary, weight: int, requests: int, failures: int, now: datetime) -> Decision:
    rate = 100.0 * (requests - failures) / requests
    measured = (
        f"{rate:.1f}% of {requests} canary requests succeeded (threshold {canary.threshold}%)"
    )
    if rate < canary.threshold:
        return Decision(
            0, ROLLED_BACK, condition("CanaryRolledBack", "ThresholdMissed", measured, now)
        )
    grown = min(100, weight + max(1, canary.canary))
    if grown >= 100:
        return Decision(100, PROMOTED, condition("CanaryPromoted", "ThresholdMet", measured, now))
    message = f"{measured}; canary share {weight}% -> {grown}%"
    return Decision(
        grown, PROGRESSING, condition("CanaryProgressing", "ThresholdMet", message, now)
    )


def condition(kind: str, reason: str, message: str, now: datetime) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastTransitionTime": now.isoformat(),
    }

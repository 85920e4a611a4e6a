"""Deployments: a model version served under an endpoint name, with its settings."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from openmaas.domain.errors import BadRequest

ENDPOINT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class DeploymentStatus(StrEnum):
    DEPLOYING = "deploying"
    ACTIVE = "active"
    FAILED = "failed"
    UNDEPLOYED = "undeployed"


def validate_endpoint_name(name: str) -> str:
    if not ENDPOINT_PATTERN.match(name):
        raise BadRequest(
            f"invalid endpoint name {name!r}: letters, digits, '_', '.' or '-' (at most 128)",
            code="invalid_endpoint_name",
        )
    return name


@dataclass(frozen=True, slots=True)
class DeploymentConfig:
    max_batch_size: int = 1
    """Rows run together by the dynamic batcher; 1 turns batching off."""
    max_wait_ms: float = 2.0
    """How long the batcher waits for more rows before it runs a partial batch."""
    max_concurrency: int = 64
    """Requests this deployment runs at once; more wait their turn."""
    timeout_s: float = 30.0
    """A request that has not finished after this long gets 504."""
    warm: bool = True
    """Load on deploy (warm) rather than on first use."""
    options: dict[str, Any] = field(default_factory=dict)
    """Runtime options, merged over the version's own."""
    max_prompt_characters: int | None = None
    """Longest prompt (all its texts together) in characters; None: the platform's."""
    max_prompt_tokens: int | None = None
    """Most prompt tokens; None: the platform's, else the model's context length."""
    max_rows: int | None = None
    """Most rows one tensor request may carry; None: the platform's."""

    def __post_init__(self) -> None:
        if not 1 <= self.max_batch_size <= 4096:
            raise BadRequest("max_batch_size is between 1 and 4096", code="invalid_config")
        if not 0 <= self.max_wait_ms <= 1000:
            raise BadRequest("max_wait_ms is between 0 and 1000", code="invalid_config")
        if not 1 <= self.max_concurrency <= 10_000:
            raise BadRequest("max_concurrency is between 1 and 10000", code="invalid_config")
        if not 0 < self.timeout_s <= 3600:
            raise BadRequest("timeout_s is between 0 and 3600", code="invalid_config")
        for name in ("max_prompt_characters", "max_prompt_tokens", "max_rows"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= 2**31 - 1:
                raise BadRequest(f"{name} is between 1 and 2147483647", code="invalid_config")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> DeploymentConfig:
        known = {k: v for k, v in (data or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(slots=True)
class Deployment:
    id: int
    endpoint_name: str
    model_name: str
    version: int
    model_version_id: int
    runtime: str
    status: DeploymentStatus
    config: DeploymentConfig
    deployed_at: datetime
    undeployed_at: datetime | None = None
    error: str | None = None

"""Deployments: a model version served under an endpoint name, with its settings."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from openmaas.domain.errors import BadRequest

ENDPOINT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
ENGINES = ("local", "ray")
AUTOSCALING_KEYS = frozenset({"min_replicas", "max_replicas", "target_ongoing_requests"})
ACTOR_OPTION_KEYS = frozenset({"num_cpus", "memory"})


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
    engine: str = "local"
    """Where the model runs: ``local`` (in the gateway's processes) or ``ray`` (replicas
    on the Ray Serve cluster at ``OPENMAAS_RAY_ADDRESS``)."""
    num_replicas: int | None = None
    """Ray: a fixed number of replicas (1 when neither this nor ``autoscaling`` is set)."""
    autoscaling: dict[str, Any] | None = None
    """Ray: ``min_replicas``, ``max_replicas`` and ``target_ongoing_requests``."""
    ray_actor_options: dict[str, Any] | None = None
    """Ray: what each replica reserves, ``num_cpus`` and ``memory`` (bytes)."""

    def __post_init__(self) -> None:
        _check_engine(self)
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


def _invalid(message: str) -> BadRequest:
    return BadRequest(message, code="invalid_config")


def _number(value: Any, name: str, low: float, high: float, *, integer: bool = False) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise _invalid(f"{name} is {kind} between {low:g} and {high:g}")


def _check_engine(config: DeploymentConfig) -> None:
    if config.engine not in ENGINES:
        raise _invalid(f"engine is one of {', '.join(ENGINES)}")
    ray_fields = (config.num_replicas, config.autoscaling, config.ray_actor_options)
    if config.engine != "ray":
        if any(value is not None for value in ray_fields):
            raise _invalid("num_replicas, autoscaling and ray_actor_options need engine 'ray'")
        return
    if config.num_replicas is not None and config.autoscaling is not None:
        raise _invalid("name num_replicas or autoscaling, not both")
    if config.num_replicas is not None:
        _number(config.num_replicas, "num_replicas", 1, 1000, integer=True)
    if config.autoscaling is not None:
        scaling = config.autoscaling
        if not isinstance(scaling, dict) or not set(scaling) <= AUTOSCALING_KEYS:
            raise _invalid(f"autoscaling takes {', '.join(sorted(AUTOSCALING_KEYS))}")
        low = scaling.get("min_replicas", 1)
        high = scaling.get("max_replicas", max(low, 1) if isinstance(low, int) else 1)
        _number(low, "autoscaling.min_replicas", 0, 1000, integer=True)
        _number(high, "autoscaling.max_replicas", 1, 1000, integer=True)
        if low > high:
            raise _invalid("autoscaling.min_replicas is at most max_replicas")
        if "target_ongoing_requests" in scaling:
            _number(scaling["target_ongoing_requests"], "target_ongoing_requests", 0.1, 10_000)
    if config.ray_actor_options is not None:
        options = config.ray_actor_options
        if not isinstance(options, dict) or not set(options) <= ACTOR_OPTION_KEYS:
            raise _invalid(f"ray_actor_options takes {', '.join(sorted(ACTOR_OPTION_KEYS))}")
        if "num_cpus" in options:
            _number(options["num_cpus"], "ray_actor_options.num_cpus", 0, 1024)
        if "memory" in options:
            _number(options["memory"], "ray_actor_options.memory", 1, 2**50, integer=True)


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

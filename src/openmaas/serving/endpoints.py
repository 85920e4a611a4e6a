"""The in-memory routing table: endpoint names and model versions to live endpoints.

Built from the database at start and kept in step by ``ServingService``; the hot path
only reads these dictionaries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from openmaas.domain.deployments import Deployment, DeploymentStatus
from openmaas.domain.errors import NotFound
from openmaas.domain.models import ModelVersion, version_selector
from openmaas.runtimes import ArtifactSpec, Runtime
from openmaas.serving.batcher import Batcher
from openmaas.serving.cache import CacheKey
from openmaas.serving.metrics import EndpointMeters
from openmaas.serving.stats import EndpointStats

if TYPE_CHECKING:
    from openmaas.serving.ray_engine import RayPlacement


@dataclass(eq=False)
class Endpoint:
    deployment: Deployment
    version: ModelVersion
    artifact: Callable[[], Awaitable[ArtifactSpec]]
    """The artifact ready to load (fetched into this replica's cache when remote)."""
    runtime_class: type[Runtime]
    cache_key: CacheKey
    size: int
    semaphore: asyncio.Semaphore
    batcher: Batcher | None = None
    stats: EndpointStats = field(default_factory=EndpointStats)
    in_flight: int = 0
    closed: bool = False
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    meters: EndpointMeters | None = None  # filled in by the data plane on first use
    placement: RayPlacement | None = None
    """Where the model runs when not in this process (``"engine": "ray"``)."""

    def __post_init__(self) -> None:
        self.idle.set()

    @property
    def name(self) -> str:
        return self.deployment.endpoint_name

    @property
    def labels(self) -> tuple[str, str]:
        return (self.deployment.model_name, str(self.deployment.version))

    async def build_runtime(self) -> Runtime:
        spec = await self.artifact()
        if self.placement is not None:
            return self.placement.runtime(self.runtime_class, spec)
        return self.runtime_class(spec)

    def enter(self) -> None:
        self.in_flight += 1
        self.idle.clear()

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self.idle.set()

    def to_dict(self) -> dict[str, Any]:
        deployment = self.deployment
        return {
            "id": deployment.id,
            "endpoint_name": deployment.endpoint_name,
            "model_name": deployment.model_name,
            "version": deployment.version,
            "runtime": deployment.runtime,
            "status": deployment.status.value,
            "error": deployment.error,
            "deployed_at": deployment.deployed_at.isoformat(),
            "undeployed_at": None,
            "config": deployment.config.to_dict(),
            "in_flight": self.in_flight,
            **self.stats.to_dict(),
        }


class EndpointTable:
    def __init__(self) -> None:
        self.by_name: dict[str, Endpoint] = {}
        self.by_model: dict[str, dict[int, list[Endpoint]]] = {}
        self.aliases: dict[str, dict[str, int]] = {}

    def add(self, endpoint: Endpoint) -> None:
        self.by_name[endpoint.name] = endpoint
        versions = self.by_model.setdefault(endpoint.deployment.model_name, {})
        versions.setdefault(endpoint.deployment.version, []).append(endpoint)

    def remove(self, endpoint: Endpoint) -> None:
        self.by_name.pop(endpoint.name, None)
        versions = self.by_model.get(endpoint.deployment.model_name, {})
        siblings = versions.get(endpoint.deployment.version, [])
        if endpoint in siblings:
            siblings.remove(endpoint)
        if not siblings:
            versions.pop(endpoint.deployment.version, None)
        if not versions:
            self.by_model.pop(endpoint.deployment.model_name, None)

    def shares_cache_key(self, endpoint: Endpoint) -> bool:
        return any(
            other is not endpoint and other.cache_key == endpoint.cache_key
            for other in self.by_name.values()
        )

    def endpoint(self, name: str) -> Endpoint:
        found = self.by_name.get(name)
        if found is None:
            raise NotFound(f"no endpoint {name!r} is deployed", code="endpoint_not_found")
        return found

    def for_model(self, model_name: str, selector: int | str | None = None) -> Endpoint:
        """The endpoint serving a version: a number, an alias, or the newest deployed."""
        versions = self.by_model.get(model_name)
        if not versions:
            raise NotFound(f"model {model_name!r} is not deployed", code="model_not_deployed")
        if selector is None:
            number = max(versions)
        elif isinstance(selector, int):
            number = selector
        else:
            alias = self.aliases.get(model_name, {}).get(selector)
            if alias is None:
                raise NotFound(
                    f"model {model_name!r} has no deployed version called {selector!r}",
                    code="version_not_deployed",
                )
            number = alias
        candidates = versions.get(number)
        if not candidates:
            raise NotFound(
                f"version {number} of {model_name!r} is not deployed",
                code="version_not_deployed",
            )
        for candidate in candidates:
            if candidate.deployment.status is not DeploymentStatus.FAILED:
                return candidate
        return candidates[0]

    def reference(self, ref: str) -> Endpoint:
        """An endpoint name, a model name (newest deployed), ``name/2`` or ``name@alias``."""
        found = self.by_name.get(ref)
        if found is not None:
            return found
        name = ref
        selector: int | str | None = None
        if "@" in ref:
            name, selector = ref.split("@", 1)
        elif "/" in ref:
            name, number = ref.split("/", 1)
            selector = version_selector(number)
        return self.for_model(name, selector)

    def knows(self, ref: str) -> bool:
        """Whether ``ref`` names something deployed (see ``reference``)."""
        try:
            self.reference(ref)
        except NotFound:
            return False
        return True

    def resolve(self, name: str, selector: int | str | None = None) -> Endpoint:
        """A V2 model name: an endpoint name first, then a model name."""
        if selector is None and name in self.by_name:
            return self.by_name[name]
        return self.for_model(name, selector)

"""Deployments at run time: deploy, undeploy with draining, restore, and sync across workers."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from typing import Any

from openmaas.background import Periodic
from openmaas.domain.deployments import (
    Deployment,
    DeploymentConfig,
    DeploymentStatus,
    validate_endpoint_name,
)
from openmaas.domain.errors import BadRequest, Conflict, NotFound, OpenMaaSError
from openmaas.domain.models import ModelRef, ModelVersion, Signature, version_selector
from openmaas.registry import RegistryService
from openmaas.runtimes import runtime_named
from openmaas.serving.batcher import Batcher
from openmaas.serving.cache import ModelCache
from openmaas.serving.dataplane import DataPlane
from openmaas.serving.endpoints import Endpoint, EndpointTable
from openmaas.serving.input_limits import InputLimits
from openmaas.serving.metrics import ServingMetrics
from openmaas.serving.ray_engine import RayCluster, RayPlacement
from openmaas.store import Database, deployments_repo
from openmaas.store.tables import DeploymentRow, ModelVersionRow

logger = logging.getLogger("openmaas.serving")

# A loaded model takes more memory than its file; a rough factor for the budget.
_MEMORY_FACTOR = 2
_MIN_MODEL_BYTES = 1024 * 1024
# What a model on Ray costs this process: a handle.
_REMOTE_MODEL_BYTES = 64 * 1024


class ServingService:
    def __init__(
        self,
        db: Database,
        registry: RegistryService,
        *,
        cache_bytes: int,
        sync_interval_s: float = 1.0,
        input_limits: InputLimits | None = None,
        ray_address: str | None = None,
        ray_app_prefix: str = "openmaas-",
    ) -> None:
        self.db = db
        self.ray = RayCluster(ray_address, ray_app_prefix) if ray_address else None
        self.registry = registry
        self.metrics = ServingMetrics()
        self.cache = ModelCache(cache_bytes, self.metrics)
        self.table = EndpointTable()
        self.dataplane = DataPlane(self.table, self.cache, self.metrics)
        self.sync_interval_s = sync_interval_s
        self.input_limits = input_limits or InputLimits()
        self._version: int | None = None
        self._syncer = Periodic(
            "openmaas-deployments-sync",
            sync_interval_s,
            self.sync,
            logger=logger,
            failure="refreshing deployments failed; retrying",
        )
        self._background: set[asyncio.Task[None]] = set()
        self._startup: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await self.sync()
        # What the first sync spawned are the loads of deployments marked warm.
        self._startup = set(self._background)
        self._syncer.start()

    def startup_loads(self) -> tuple[int, int]:
        """(still loading of those loaded at start, failed among all deployments here)."""
        loading = sum(1 for task in self._startup if not task.done())
        failed = sum(
            1
            for endpoint in self.table.by_name.values()
            if endpoint.deployment.status is DeploymentStatus.FAILED
        )
        return loading, failed

    def model_state(self, endpoint: Endpoint) -> tuple[str, str | None]:
        """What this process can do with the endpoint's model now, and why not.

        ``loaded`` (in memory and ready), ``available`` (deployed, loads on its next
        request), ``loading``, ``failed`` (its last load failed; the next request tries
        again), ``unready`` (loaded, but its runtime says it cannot serve) or
        ``undeployed``.
        """
        if endpoint.closed:
            return "undeployed", None
        runtime = self.cache.loaded(endpoint.cache_key)
        if runtime is not None:
            return ("loaded", None) if runtime.ready else ("unready", "the runtime is not ready")
        status = endpoint.deployment.status
        if status is DeploymentStatus.DEPLOYING or self.cache.is_loading(endpoint.cache_key):
            return "loading", None
        if status is DeploymentStatus.FAILED:
            return "failed", endpoint.deployment.error
        return "available", None

    async def wait_idle(self, timeout_s: float) -> None:
        """Wait (at most ``timeout_s``) until no request is running on any endpoint."""
        endpoints = list(self.table.by_name.values())
        waits = [asyncio.create_task(e.idle.wait()) for e in endpoints if not e.idle.is_set()]
        if waits:
            _done, pending = await asyncio.wait(waits, timeout=timeout_s)
            for task in pending:
                task.cancel()

    async def stop(self) -> None:
        await self._syncer.stop()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.cache.clear()

    # --- deploy / undeploy -------------------------------------------------------------

    async def deploy(
        self,
        *,
        model_name: str,
        version: str | int | None,
        endpoint_name: str | None,
        config: DeploymentConfig,
        wait: bool = True,
    ) -> dict[str, Any]:
        model_version = await self.registry.resolve(ModelRef.parse(model_name, version))
        runtime_named(model_version.runtime)  # fail early for a runtime that is gone
        if config.engine == "ray" and self.ray is None:
            raise BadRequest(
                "engine 'ray' needs a Ray cluster: set OPENMAAS_RAY_ADDRESS",
                code="engine_unavailable",
            )
        name = validate_endpoint_name(
            endpoint_name or f"{model_version.model_name}-v{model_version.version}"
        )
        async with self._lock:
            async with self.db.session() as session:
                if name in self.table.by_name or await deployments_repo.live_endpoint_exists(
                    session=session, endpoint_name=name
                ):
                    raise Conflict(f"endpoint {name!r} is already deployed", code="endpoint_exists")
                row = await deployments_repo.add_deployment(
                    session=session,
                    endpoint_name=name,
                    model_name=model_version.model_name,
                    version=model_version.version,
                    model_version_id=await self._version_id(model_version),
                    config=config.to_dict(),
                )
                await session.commit()
            endpoint = self._endpoint(_deployment(row, model_version.runtime), model_version)
            self.table.add(endpoint)
        if config.warm:
            loading = self._warm(endpoint)
            if wait:
                await loading
            else:
                self._spawn(loading)
        else:
            await self._set_status(endpoint, DeploymentStatus.ACTIVE)
        return endpoint.to_dict()

    async def _version_id(self, version: ModelVersion) -> int:
        from sqlalchemy import select

        from openmaas.store.tables import ModelRow

        async with self.db.session() as session:
            query = (
                select(ModelVersionRow.id)
                .join(ModelRow, ModelRow.id == ModelVersionRow.model_id)
                .where(ModelRow.name == version.model_name)
                .where(ModelVersionRow.version == version.version)
            )
            found = await session.scalar(query)
        if found is None:
            raise NotFound("the version was deleted meanwhile", code="version_not_found")
        return int(found)

    async def undeploy(
        self,
        *,
        endpoint_name: str | None = None,
        model_name: str | None = None,
        version: str | int | None = None,
    ) -> list[dict[str, Any]]:
        if endpoint_name:
            targets = [self.table.endpoint(endpoint_name)]
        elif model_name:
            versions = self.table.by_model.get(model_name, {})
            if version is None or version == "":
                targets = [e for group in versions.values() for e in group]
            else:
                chosen = self.table.for_model(model_name, version_selector(version))
                targets = list(versions.get(chosen.deployment.version, []))
            if not targets:
                raise NotFound(f"model {model_name!r} is not deployed", code="model_not_deployed")
        else:
            raise BadRequest("name an endpoint_name, or a model_name", code="invalid_request")
        async with self._lock:
            for endpoint in targets:
                await self._detach(endpoint, persist=True)
        results = []
        for endpoint in targets:
            await self._drain(endpoint, remove=True)
            results.append({**endpoint.to_dict(), "status": "undeployed"})
        return results

    async def _detach(self, endpoint: Endpoint, *, persist: bool) -> None:
        """Stop routing to the endpoint (called under the lock)."""
        if endpoint.closed:
            return
        endpoint.closed = True
        self.table.remove(endpoint)
        endpoint.deployment.status = DeploymentStatus.UNDEPLOYED
        if persist:
            async with self.db.session() as session:
                await deployments_repo.set_status(
                    session=session, deployment_id=endpoint.deployment.id, status="undeployed"
                )
                await session.commit()

    async def _drain(self, endpoint: Endpoint, *, remove: bool = False) -> None:
        """Let in-flight requests finish, then free the model unless another endpoint uses it.

        ``remove``: this process undeployed it, so it also deletes what runs elsewhere
        (the Ray Serve application); other processes only let go of their handles.
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(endpoint.idle.wait(), endpoint.deployment.config.timeout_s)
        if not self.table.shares_cache_key(endpoint):
            await self.cache.drop(endpoint.cache_key)
        if remove and endpoint.placement is not None:
            await endpoint.placement.remove()
        self._forget_series(endpoint)

    def _forget_series(self, endpoint: Endpoint) -> None:
        """Its metrics' series, once no endpoint of the same model version is left."""
        model, version = endpoint.deployment.model_name, endpoint.deployment.version
        if self.table.by_model.get(model, {}).get(version):
            return
        self.metrics.forget_version(endpoint.labels)
        if model not in self.table.by_model:
            self.metrics.forget_model(model)

    # --- listing ----------------------------------------------------------------------

    async def describe(self, endpoint: Endpoint) -> dict[str, Any]:
        """The endpoint as listed, with its replicas as Ray reports them when on Ray."""
        described = endpoint.to_dict()
        if endpoint.placement is not None:
            described["ray"] = await endpoint.placement.status()
        return described

    async def list(self, *, include_undeployed: bool = True) -> list[dict[str, Any]]:
        endpoints = list(self.table.by_name.values())
        items = list(await asyncio.gather(*(self.describe(e) for e in endpoints)))
        if include_undeployed:
            async with self.db.session() as session:
                for row in await deployments_repo.recent_undeployed(session=session):
                    items.append(_undeployed_dict(row))
        return items

    # --- loading --------------------------------------------------------------------

    def _endpoint(self, deployment: Deployment, version: ModelVersion) -> Endpoint:
        config = deployment.config
        options_key = json.dumps({**version.options, **config.options}, sort_keys=True)
        placement = None
        size = max(version.artifact_size * _MEMORY_FACTOR, _MIN_MODEL_BYTES)
        if config.engine == "ray":
            placement = RayPlacement(self.ray, deployment.endpoint_name, config)
            # Its own cache entry: a handle, not a copy of the model in this process.
            options_key = f"{options_key} ray:{placement.app_name}"
            size = _REMOTE_MODEL_BYTES
        endpoint = Endpoint(
            deployment=deployment,
            version=version,
            artifact=functools.partial(self.registry.artifact_spec, version, config.options),
            runtime_class=runtime_named(version.runtime),
            cache_key=(deployment.model_version_id, options_key),
            size=size,
            semaphore=asyncio.Semaphore(config.max_concurrency),
            placement=placement,
        )
        if config.max_batch_size > 1:
            endpoint.batcher = Batcher(
                self.dataplane.runner(endpoint),
                max_batch_size=config.max_batch_size,
                max_wait_ms=config.max_wait_ms,
            )
        return endpoint

    async def _warm(self, endpoint: Endpoint) -> None:
        try:
            await self.cache.ensure_loaded(
                endpoint.cache_key, endpoint.build_runtime, endpoint.size, endpoint.labels
            )
        except Exception as exc:
            message = exc.message if isinstance(exc, OpenMaaSError) else repr(exc)
            logger.warning("loading %s failed: %s", endpoint.name, message)
            await self._set_status(endpoint, DeploymentStatus.FAILED, message)
            return
        self._adopt_signature(endpoint)
        await self._set_status(endpoint, DeploymentStatus.ACTIVE)

    def _adopt_signature(self, endpoint: Endpoint) -> None:
        # Runtimes may learn the signature only when loaded (e.g. a Python class).
        if endpoint.version.signature.empty and endpoint.cache_key in self.cache:
            runtime = self.cache._entries[endpoint.cache_key].runtime
            if isinstance(runtime.signature, Signature):
                endpoint.version.signature = runtime.signature

    async def _set_status(
        self, endpoint: Endpoint, status: DeploymentStatus, error: str | None = None
    ) -> None:
        if endpoint.closed:
            return
        endpoint.deployment.status = status
        endpoint.deployment.error = error
        try:
            async with self.db.session() as session:
                await deployments_repo.set_status(
                    session=session,
                    deployment_id=endpoint.deployment.id,
                    status=status.value,
                    error=error,
                )
                await session.commit()
        except OpenMaaSError as exc:
            # This process serves by its in-memory status; the stored one catches up later.
            logger.warning("could not store the status of %s: %s", endpoint.name, exc.message)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- keeping every worker in step -----------------------------------------------

    async def refresh(self) -> None:
        """Pick up a change this process just stored (an alias moved) now, not at the next
        tick; a failure is left to the next tick."""
        try:
            await self.sync()
        except OpenMaaSError as exc:
            logger.warning("refreshing deployments failed; retrying: %s", exc.message)

    async def sync(self) -> None:
        """Bring the table in line with the database when anything changed there."""
        # Under the lock: a deploy in this process must not land between the read and
        # the comparison, or its fresh endpoint would look stale and be retired.
        async with self._lock:
            async with self.db.session() as session:
                revision = await deployments_repo.read_version(session=session)
                if revision == self._version:
                    return
                live = await deployments_repo.live_deployments(session=session)
                names = {row.model_name for row, _ in live}
                aliases = await deployments_repo.aliases_of_models(
                    session=session, model_names=names
                )
            self.table.aliases = aliases
            wanted = {row.id: (row, version_row) for row, version_row in live}
            for endpoint in list(self.table.by_name.values()):
                if endpoint.deployment.id not in wanted:
                    await self._detach(endpoint, persist=False)
                    self._spawn(self._drain(endpoint))
            known = {e.deployment.id for e in self.table.by_name.values()}
            for deployment_id, (row, version_row) in wanted.items():
                if deployment_id in known:
                    continue
                version = await self.registry.resolve(ModelRef(row.model_name, row.version))
                endpoint = self._endpoint(_deployment(row, version_row.runtime), version)
                self.table.add(endpoint)
                if endpoint.deployment.config.warm:
                    self._spawn(self._warm(endpoint))
            self._version = revision


def _deployment(row: DeploymentRow, runtime: str) -> Deployment:
    return Deployment(
        id=row.id,
        endpoint_name=row.endpoint_name,
        model_name=row.model_name,
        version=row.version,
        model_version_id=row.model_version_id,
        runtime=runtime,
        status=DeploymentStatus(row.status if row.status != "undeployed" else "deploying"),
        config=DeploymentConfig.from_dict(row.config),
        deployed_at=row.deployed_at,
        error=row.error,
    )


def _undeployed_dict(row: DeploymentRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "endpoint_name": row.endpoint_name,
        "model_name": row.model_name,
        "version": row.version,
        "status": "undeployed",
        "error": row.error,
        "deployed_at": row.deployed_at.isoformat(),
        "undeployed_at": row.undeployed_at.isoformat() if row.undeployed_at else None,
        "config": row.config,
    }

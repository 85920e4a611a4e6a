"""Deployments placed on a Ray Serve cluster (``"engine": "ray"``).

The gateway keeps everything that is not the model: keys, plans, limits, metering,
routing, metrics, the concurrency limit and the dynamic batcher. What it hands Ray is one
call per (batched) request, through a deployment handle from the gateway's own process,
which is a Ray driver connected to ``OPENMAAS_RAY_ADDRESS``. The handle was measured
faster than Ray Serve's HTTP proxy (``benchmarks/ray_serve.py``, docs/performance.md):
tensors travel pickled, with no JSON and no second HTTP hop.

Batching is ours, in the gateway, rather than Ray Serve's ``@serve.batch`` in the replica:
the hop to a replica is the expensive part, and a batch formed before it pays one hop for
many requests; ``@serve.batch`` would batch only what already crossed it one by one. It
is also the same batcher, with the same settings, as a local deployment's.

To the serving layer a Ray deployment is one more runtime (``RayTensorRuntime``,
``RayChatRuntime``, ``RayEmbeddingRuntime``): loading it deploys (or finds) the Serve
application; unloading it forgets the handle but leaves the application running, since
other gateway processes use it too; ``RayPlacement.remove`` deletes the application when
the endpoint is undeployed. ``Replicas`` makes the calls, and runs a call again when its
replica dies under it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from openmaas.domain.deployments import DeploymentConfig
from openmaas.domain.errors import BadRequest, OpenMaaSError, ServiceUnavailable
from openmaas.domain.models import Signature
from openmaas.runtimes import (
    ArtifactSpec,
    ChatRuntime,
    EmbeddingRuntime,
    Runtime,
    TensorRuntime,
    Tensors,
)
from openmaas.runtimes.language import GENERATION_SIGNATURE
from openmaas.runtimes.sentence_embeddings import SentenceTransformersRuntime
from openmaas.runtimes.transformers_llm import TransformersRuntime
from openmaas.serving.ray_replica import EmbeddingReplica, LanguageReplica, ModelReplica

logger = logging.getLogger("openmaas.serving.ray")

RETRY_AFTER_S = 1
# A replica that died under a request: tried again on another, this many times in all.
_ATTEMPTS = 3
# How long the cluster may take to answer a status question before the listing goes on
# without it.
_STATUS_TIMEOUT_S = 5.0
# How quickly Ray notices a dead or stuck replica and starts a new one.
_HEALTH_CHECK_PERIOD_S = 2.0
_HEALTH_CHECK_TIMEOUT_S = 10.0
# Requests Ray Serve queues per replica before it pushes back (503 here).
_MAX_ONGOING_REQUESTS = 64


def _unavailable(message: str) -> ServiceUnavailable:
    return ServiceUnavailable(
        message, code="replica_unavailable", headers={"Retry-After": str(RETRY_AFTER_S)}
    )


class RayCluster:
    """This process's connection to the Ray cluster, made on first use."""

    def __init__(self, address: str, app_prefix: str) -> None:
        self.address = address
        self.app_prefix = app_prefix
        self._connected = False
        self._lock = asyncio.Lock()

    async def connect(self) -> None:
        if self._connected:
            return
        async with self._lock:
            if not self._connected:
                try:
                    await asyncio.to_thread(self._connect)
                except ImportError as exc:
                    raise BadRequest(
                        "this server has no Ray: install openmaas[ray]", code="engine_unavailable"
                    ) from exc
                except Exception as exc:
                    logger.warning("connecting to Ray at %s failed: %r", self.address, exc)
                    raise _unavailable("the Ray cluster cannot be reached") from exc
                self._connected = True

    def _connect(self) -> None:
        import ray
        from ray import serve

        if not ray.is_initialized():
            ray.init(
                address=self.address,
                namespace="openmaas",
                log_to_driver=False,
                logging_level=logging.WARNING,
                configure_logging=False,
            )
        # Requests come through handles from the gateway: no HTTP proxy is needed for them.
        serve.start(proxy_location="Disabled")

    async def status(self, app_name: str) -> dict[str, Any]:
        await self.connect()
        return await asyncio.wait_for(
            asyncio.to_thread(_application_status, app_name), _STATUS_TIMEOUT_S
        )

    async def delete(self, app_name: str) -> None:
        await self.connect()
        from ray import serve

        await asyncio.to_thread(serve.delete, app_name, True)


def _application_status(app_name: str) -> dict[str, Any]:
    from ray import serve

    application = serve.status().applications.get(app_name)
    if application is None:
        return {"application": app_name, "status": "NOT_FOUND", "replicas": {}}
    replicas: dict[str, int] = {}
    for deployment in application.deployments.values():
        for state, count in deployment.replica_states.items():
            if not count:
                continue
            key = str(getattr(state, "value", state))
            replicas[key] = replicas.get(key, 0) + count
    return {
        "application": app_name,
        "status": str(getattr(application.status, "value", application.status)),
        "message": application.message or None,
        "replicas": replicas,
    }


class RayPlacement:
    """Where one endpoint's model runs on Ray: its application and replica settings."""

    def __init__(
        self, cluster: RayCluster | None, endpoint_name: str, config: DeploymentConfig
    ) -> None:
        self._cluster = cluster
        self.app_name = f"{cluster.app_prefix if cluster else ''}{endpoint_name}"
        self.config = config

    @property
    def cluster(self) -> RayCluster:
        if self._cluster is None:
            # Deployed on Ray by a server that had a cluster; this one was started without.
            raise _unavailable("this server has no Ray cluster: set OPENMAAS_RAY_ADDRESS")
        return self._cluster

    def runtime(self, runtime_class: type[Runtime], spec: ArtifactSpec) -> Runtime:
        self.cluster  # noqa: B018 - fails without a cluster, before anything is built
        if issubclass(runtime_class, TensorRuntime):
            return RayTensorRuntime(self, runtime_class.name, spec)
        if issubclass(runtime_class, TransformersRuntime):
            return RayChatRuntime(self, runtime_class(spec), spec)
        if issubclass(runtime_class, SentenceTransformersRuntime):
            return RayEmbeddingRuntime(self, runtime_class(spec), spec)
        raise BadRequest(
            f"{runtime_class.name} models cannot run on Ray yet; deploy them 'local'",
            code="engine_unsupported",
        )

    def deploy(self, replica: type, runtime_name: str, spec: ArtifactSpec) -> Any:
        """Deploy (or find) the Serve application; its handle (blocking: in a thread)."""
        from ray import serve

        # Typed for its use as a decorator: called here, it gives a deployment.
        deployment: Any = serve.deployment(replica)
        app = deployment.options(**self.deployment_options()).bind(runtime_name, spec)
        # Deploying what already runs with the same settings changes nothing: every
        # gateway process does this when it loads the endpoint.
        return serve.run(app, name=self.app_name, route_prefix=None, blocking=False)

    def deployment_options(self) -> dict[str, Any]:
        config = self.config
        options: dict[str, Any] = {
            "name": "model",
            "max_ongoing_requests": _MAX_ONGOING_REQUESTS,
            "health_check_period_s": _HEALTH_CHECK_PERIOD_S,
            "health_check_timeout_s": _HEALTH_CHECK_TIMEOUT_S,
            "ray_actor_options": {"num_cpus": 0.5, **(config.ray_actor_options or {})},
        }
        if config.autoscaling is not None:
            options["autoscaling_config"] = dict(config.autoscaling)
        else:
            options["num_replicas"] = config.num_replicas or 1
        return options

    async def status(self) -> dict[str, Any]:
        try:
            return await self.cluster.status(self.app_name)
        except Exception as exc:
            return {"application": self.app_name, "status": "UNKNOWN", "error": repr(exc)[:200]}

    async def remove(self) -> None:
        """Delete the Serve application (its replicas stop once their requests finish)."""
        try:
            await self.cluster.delete(self.app_name)
        except Exception:
            logger.exception("deleting the Ray Serve application %s failed", self.app_name)


class Replicas:
    """The deployment handle of one endpoint's Serve application, and calls through it.

    A call that has done nothing visible before it answers (inference, an embedding, a
    non-streamed generation, a stream before its first chunk) is tried again when its
    replica dies under it: Ray sends it to another replica, or to the one it starts.
    """

    def __init__(self, placement: RayPlacement) -> None:
        self.placement = placement
        self.handle: Any = None

    async def deploy(self, replica: type, runtime_name: str, spec: ArtifactSpec) -> None:
        await self.placement.cluster.connect()
        self.handle = await asyncio.to_thread(self.placement.deploy, replica, runtime_name, spec)

    def forget(self) -> None:
        self.handle = None

    def _method(self, name: str, *, stream: bool = False) -> Any:
        if self.handle is None:
            raise _unavailable("the model's replicas are not reachable")
        handle = self.handle.options(stream=True) if stream else self.handle
        return getattr(handle, name)

    async def call(self, name: str, *args: Any) -> Any:
        """What the replica's method answered (its failure raised as a local model's)."""
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                state, value = await self._method(name).remote(*args)
            except _ray_errors() as exc:
                failure = self._failure(exc, retry=attempt < _ATTEMPTS)
                if failure is not None:
                    raise failure from exc
                await asyncio.sleep(0.05 * attempt)
                continue
            if state == "ok":
                return value
            raise _replica_error(value)
        raise AssertionError("unreachable")  # pragma: no cover

    async def stream(self, name: str, *args: Any) -> AsyncIterator[dict[str, Any]]:
        """The replica's chunks; once one has been relayed, a failure ends the stream."""
        for attempt in range(1, _ATTEMPTS + 1):
            relayed = False
            try:
                async for state, value in self._method(name, stream=True).remote(*args):
                    if state != "ok":
                        raise _replica_error(value)
                    relayed = True
                    yield dict(value)
                return
            except _ray_errors() as exc:
                failure = self._failure(exc, retry=not relayed and attempt < _ATTEMPTS)
                if failure is not None:
                    raise failure from exc
                await asyncio.sleep(0.05 * attempt)

    def _failure(self, exc: BaseException, *, retry: bool) -> ServiceUnavailable | None:
        """What a Ray error means for the request; None: run it again."""
        from ray import exceptions as ray_errors
        from ray.serve.exceptions import BackPressureError, ReplicaUnavailableError

        app_name = self.placement.app_name
        if isinstance(exc, BackPressureError):
            return _unavailable("every replica of the model is busy")
        if isinstance(exc, ray_errors.RayActorError | ReplicaUnavailableError):
            # The replica died under the request or is being replaced: Ray starts a new one.
            logger.warning("a Ray replica of %s failed: %r", app_name, exc)
            return None if retry else _unavailable("the model's replica went away; retry shortly")
        logger.warning("Ray failed on %s: %r", app_name, exc)
        return _unavailable("the Ray cluster could not run the request")


def _ray_errors() -> tuple[type[Exception], ...]:
    from ray import exceptions as ray_errors
    from ray.serve.exceptions import RayServeException

    return ray_errors.RayError, RayServeException


class _OnRay:
    """What every runtime whose replicas run on Ray Serve shares: the replicas, their
    readiness, and no inspection of its own (the local runtime's is used)."""

    name = "ray"
    replicas: Replicas

    @classmethod
    def inspect(cls, spec: ArtifactSpec) -> Signature:  # pragma: no cover - never registered
        raise NotImplementedError

    async def unload(self) -> None:
        self.replicas.forget()

    @property
    def ready(self) -> bool:
        return self.replicas.handle is not None


class RayTensorRuntime(_OnRay, TensorRuntime):
    """A tensor model whose replicas run on Ray Serve, called through a deployment handle."""

    def __init__(self, placement: RayPlacement, runtime_name: str, spec: ArtifactSpec) -> None:
        super().__init__(spec)
        self.placement = placement
        self.runtime_name = runtime_name
        self.replicas = Replicas(placement)

    async def load(self) -> None:
        await self.replicas.deploy(ModelReplica, self.runtime_name, self.spec)
        if self.signature.empty:
            self.signature = Signature.from_dict(await self.replicas.call("signature"))

    async def infer(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        return dict(await self.replicas.call("infer", inputs, list(outputs or ()) or None))


class _CountsInGateway(_OnRay):
    """A language model on Ray whose tokens the gateway counts itself, with the model's
    tokenizer alone: plans reserve them before the call reaches a replica."""

    tokens: TransformersRuntime | SentenceTransformersRuntime

    def count_tokens(self, text: str) -> int:
        return self.tokens.count_tokens(text)

    def prompt_tokens(self, request: dict[str, Any]) -> int:
        return self.tokens.prompt_tokens(request)


class RayChatRuntime(_CountsInGateway, ChatRuntime):
    """A text generator whose replicas run on Ray Serve; the gateway loads its tokenizer,
    not its weights."""

    def __init__(
        self, placement: RayPlacement, tokens: TransformersRuntime, spec: ArtifactSpec
    ) -> None:
        super().__init__(spec)
        self.placement = placement
        self.tokens = tokens
        self.replicas = Replicas(placement)

    async def load(self) -> None:
        await self.tokens.load_tokenizer()
        await self.replicas.deploy(LanguageReplica, self.tokens.name, self.spec)
        if self.signature.empty:
            self.signature = GENERATION_SIGNATURE

    @property
    def default_max_tokens(self) -> int:  # type: ignore[override]
        return self.tokens.default_max_tokens

    def prompt_tokens_at_most(self, request: dict[str, Any]) -> int:
        return self.tokens.prompt_tokens_at_most(request)

    async def chat(self, request: dict[str, Any]) -> dict[str, Any]:
        return dict(await self.replicas.call("chat", request))

    async def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        return dict(await self.replicas.call("complete", request))

    def chat_stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        return self.replicas.stream("chat_stream", request)

    def complete_stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        return self.replicas.stream("complete_stream", request)


class RayEmbeddingRuntime(_CountsInGateway, EmbeddingRuntime):
    """A sentence-transformers model whose replicas run on Ray Serve; the replicas embed."""

    def __init__(
        self, placement: RayPlacement, tokens: SentenceTransformersRuntime, spec: ArtifactSpec
    ) -> None:
        super().__init__(spec)
        self.placement = placement
        self.tokens = tokens
        self.replicas = Replicas(placement)

    async def load(self) -> None:
        await self.tokens.load_tokenizer()
        await self.replicas.deploy(EmbeddingReplica, self.tokens.name, self.spec)
        if self.signature.empty:
            self.signature = Signature.from_dict(await self.replicas.call("signature"))

    async def embed(self, request: dict[str, Any]) -> dict[str, Any]:
        return dict(await self.replicas.call("embed", request))


def _replica_error(error: dict[str, Any]) -> OpenMaaSError:
    """The replica's failure as the error a local model would have raised."""
    status = int(error.get("status", 422))
    for kind in _error_classes():
        if kind.status_code == status:
            return kind(str(error.get("message", "")), code=str(error.get("code")))
    return OpenMaaSError(str(error.get("message", "")), code=str(error.get("code")))


def _error_classes() -> list[type[OpenMaaSError]]:
    found: list[type[OpenMaaSError]] = []
    pending = list(OpenMaaSError.__subclasses__())
    while pending:
        kind = pending.pop(0)
        found.append(kind)
        pending.extend(kind.__subclasses__())
    return found

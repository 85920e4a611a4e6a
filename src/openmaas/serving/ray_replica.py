"""One replica of a model on Ray Serve: the class Ray imports on its workers.

It builds the model with the same runtime plugins as the gateway's own processes, from
the artifact path the gateway resolved (readable by the workers: one machine, or a shared
file system). Failures travel back as plain data, not exceptions, so that the gateway
answers with the same status and code as for a local model.

Kept free of Ray imports: ``ray_engine`` wraps it with ``serve.deployment`` at deploy time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np

from openmaas.domain.errors import OpenMaaSError
from openmaas.runtimes import (
    ArtifactSpec,
    ChatRuntime,
    EmbeddingRuntime,
    TensorRuntime,
    Tensors,
    runtime_named,
)

Outcome = tuple[str, Any]
"""``("ok", tensors)`` or ``("error", {"status", "code", "message"})``."""


def _failure(exc: BaseException) -> Outcome:
    if isinstance(exc, OpenMaaSError):
        return "error", {"status": exc.status_code, "code": exc.code, "message": exc.message}
    return "error", {"status": 422, "code": "model_error", "message": repr(exc)[:500]}


class ModelReplica:
    # Ray Serve awaits an async constructor: the model loads before the replica serves.
    async def __init__(self, runtime_name: str, spec: ArtifactSpec) -> None:  # type: ignore[misc]
        runtime = runtime_named(runtime_name)(spec)
        if not isinstance(runtime, TensorRuntime):
            raise TypeError(f"{runtime_name} models take no tensors; they cannot run on Ray")
        await runtime.load()
        self.runtime = runtime

    def signature(self) -> Outcome:
        """The signature as the loaded runtime knows it (a Python class learns it on load)."""
        return "ok", self.runtime.signature.to_dict()

    async def infer(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Outcome:
        try:
            return "ok", await self.runtime.infer(inputs, outputs)
        except Exception as exc:
            return _failure(exc)

    async def __call__(self, request: Any) -> dict[str, Any]:
        """Ray Serve's HTTP proxy: ``{"inputs": {name: rows}, "outputs": [names]}`` in,
        ``{"outputs": {name: rows}}`` or ``{"error": ...}`` out (for measuring the proxy)."""
        body = await request.json()
        inputs = {name: np.asarray(rows) for name, rows in body["inputs"].items()}
        state, value = await self.infer(inputs, body.get("outputs"))
        if state != "ok":
            return {"error": value}
        return {"outputs": {name: array.tolist() for name, array in value.items()}}

    def check_health(self) -> None:
        if not self.runtime.ready:
            raise RuntimeError("the runtime is not ready")


class LanguageReplica:
    """A text generator (``transformers``): OpenAI request bodies in, OpenAI objects out."""

    async def __init__(self, runtime_name: str, spec: ArtifactSpec) -> None:  # type: ignore[misc]
        runtime = runtime_named(runtime_name)(spec)
        if not isinstance(runtime, ChatRuntime):
            raise TypeError(f"{runtime_name} models do not generate text")
        await runtime.load()
        self.runtime = runtime

    async def chat(self, request: dict[str, Any]) -> Outcome:
        try:
            return "ok", await self.runtime.chat(request)
        except Exception as exc:
            return _failure(exc)

    async def complete(self, request: dict[str, Any]) -> Outcome:
        try:
            return "ok", await self.runtime.complete(request)
        except Exception as exc:
            return _failure(exc)

    async def chat_stream(self, request: dict[str, Any]) -> AsyncIterator[Outcome]:
        async for item in _relay(self.runtime.chat_stream(request)):
            yield item

    async def complete_stream(self, request: dict[str, Any]) -> AsyncIterator[Outcome]:
        async for item in _relay(self.runtime.complete_stream(request)):
            yield item

    def check_health(self) -> None:
        if not self.runtime.ready:
            raise RuntimeError("the runtime is not ready")


class EmbeddingReplica:
    """An embedding model (``sentence-transformers``): OpenAI request bodies in, the
    embeddings ``list`` out."""

    async def __init__(self, runtime_name: str, spec: ArtifactSpec) -> None:  # type: ignore[misc]
        runtime = runtime_named(runtime_name)(spec)
        if not isinstance(runtime, EmbeddingRuntime):
            raise TypeError(f"{runtime_name} models do not embed text")
        await runtime.load()
        self.runtime = runtime

    def signature(self) -> Outcome:
        """The signature with the embedding size the loaded model reports."""
        return "ok", self.runtime.signature.to_dict()

    async def embed(self, request: dict[str, Any]) -> Outcome:
        try:
            return "ok", await self.runtime.embed(request)
        except Exception as exc:
            return _failure(exc)

    def check_health(self) -> None:
        if not self.runtime.ready:
            raise RuntimeError("the runtime is not ready")


async def _relay(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[Outcome]:
    """A stream's chunks, then its failure (after the usage chunk) as the last item."""
    try:
        async for chunk in chunks:
            yield "ok", chunk
    except Exception as exc:
        yield _failure(exc)

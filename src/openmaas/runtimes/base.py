"""The runtime contract: how the serving layer talks to any model engine.

A runtime is built from an ``ArtifactSpec``, inspected once at registration (in a worker
thread: it may read a large file), then loaded, asked to infer and unloaded by the
serving layer. Third parties add runtimes through the ``openmaas.runtimes`` entry point.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from openmaas.domain.errors import BadRequest
from openmaas.domain.models import EMPTY_SIGNATURE, Signature

logger = logging.getLogger("openmaas.runtimes")


def invalid_artifact(message: str, exc: BaseException) -> BadRequest:
    """The client's error for an artifact a library could not read.

    The library's own words name files and folders of this server and its internals: they
    go to the log, and the client learns what could not be read.
    """
    logger.warning("%s: %s: %s", message, type(exc).__name__, exc)
    return BadRequest(f"{message} (the server log says why)", code="invalid_artifact")


Tensors = dict[str, np.ndarray]


@dataclass(frozen=True, slots=True)
class ArtifactSpec:
    path: Path
    signature: Signature = EMPTY_SIGNATURE
    allow_code: bool = False
    """The admin allowed this artifact to run code when it loads (pickle, Python modules)."""
    options: Mapping[str, Any] = field(default_factory=dict)


class Runtime(ABC):
    name: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]] = ()
    """Artifact file suffixes this runtime claims when no runtime is named."""
    runs_code: ClassVar[tuple[str, ...]] = ()
    """Suffixes whose loading executes code; refused unless the admin allowed it."""

    def __init__(self, spec: ArtifactSpec) -> None:
        self.spec = spec
        self.signature = spec.signature

    @classmethod
    @abstractmethod
    def inspect(cls, spec: ArtifactSpec) -> Signature:
        """Check the artifact can be served and infer its signature (blocking)."""

    @abstractmethod
    async def load(self) -> None: ...

    async def unload(self) -> None:
        return None

    @property
    @abstractmethod
    def ready(self) -> bool: ...

    def metadata(self) -> Signature:
        return self.signature


class TensorRuntime(Runtime):
    """Classic models: named tensors in, named tensors out."""

    @abstractmethod
    async def infer(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors: ...

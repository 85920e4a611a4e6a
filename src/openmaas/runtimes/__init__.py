"""Model engines behind one interface (see ``base``)."""

from openmaas.runtimes.base import ArtifactSpec, Runtime, TensorRuntime, Tensors
from openmaas.runtimes.catalog import available_runtimes, runtime_for_filename, runtime_named
from openmaas.runtimes.language import ChatRuntime, EmbeddingRuntime, LanguageRuntime

__all__ = [
    "ArtifactSpec",
    "ChatRuntime",
    "EmbeddingRuntime",
    "LanguageRuntime",
    "Runtime",
    "TensorRuntime",
    "Tensors",
    "available_runtimes",
    "runtime_for_filename",
    "runtime_named",
]

"""Which runtimes exist: the built-in ones and those installed through entry points."""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points

from openmaas.domain.errors import BadRequest
from openmaas.runtimes.base import Runtime
from openmaas.runtimes.onnx import OnnxRuntime
from openmaas.runtimes.openai_remote import OpenAIRemoteRuntime
from openmaas.runtimes.pyclass import PythonClassRuntime
from openmaas.runtimes.sentence_embeddings import SentenceTransformersRuntime
from openmaas.runtimes.sklearn import SklearnRuntime
from openmaas.runtimes.transformers_llm import TransformersRuntime
from openmaas.runtimes.v2_remote import V2RemoteRuntime

ENTRY_POINT_GROUP = "openmaas.runtimes"
# The language runtimes import their engines (torch, transformers) only when they load.
_BUILT_IN: tuple[type[Runtime], ...] = (
    SklearnRuntime,
    OnnxRuntime,
    PythonClassRuntime,
    TransformersRuntime,
    SentenceTransformersRuntime,
    OpenAIRemoteRuntime,
    V2RemoteRuntime,
)


@cache
def available_runtimes() -> dict[str, type[Runtime]]:
    runtimes: dict[str, type[Runtime]] = {cls.name: cls for cls in _BUILT_IN}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in runtimes:
            continue
        loaded = entry.load()
        if isinstance(loaded, type) and issubclass(loaded, Runtime):
            runtimes[entry.name] = loaded
    return runtimes


def runtime_named(name: str) -> type[Runtime]:
    runtime = available_runtimes().get(name)
    if runtime is None:
        known = ", ".join(sorted(available_runtimes()))
        raise BadRequest(f"unknown runtime {name!r}; known: {known}", code="unknown_runtime")
    return runtime


def runtime_for_filename(filename: str) -> type[Runtime]:
    lowered = filename.lower()
    for runtime in available_runtimes().values():
        if any(lowered.endswith(suffix) for suffix in runtime.suffixes):
            return runtime
    raise BadRequest(
        f"no runtime recognises {filename!r}; name one with the 'runtime' field",
        code="unknown_runtime",
    )

"""A Python class as a model: a module whose class has ``predict`` (and maybe ``load``).

Like an MLflow pyfunc. Importing the module runs it, so an admin must allow code.
"""

from __future__ import annotations

import importlib.util
import inspect as pyinspect
import uuid
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import anyio
import numpy as np

from openmaas.domain.errors import BadRequest
from openmaas.domain.models import Signature, TensorSpec
from openmaas.incidents import reported
from openmaas.runtimes.base import ArtifactSpec, TensorRuntime, Tensors, invalid_artifact

_DEFAULT_SIGNATURE = Signature(
    inputs=(TensorSpec("input", "FP64", (-1, -1)),),
    outputs=(TensorSpec("prediction", "FP64", (-1,)),),
)


def _import(spec: ArtifactSpec) -> ModuleType:
    if not spec.allow_code:
        raise BadRequest(
            "a Python module runs code when it loads; an admin must set allow_code",
            code="code_not_allowed",
        )
    module_name = f"openmaas_user_model_{uuid.uuid4().hex}"
    module_spec = importlib.util.spec_from_file_location(module_name, spec.path)
    if module_spec is None or module_spec.loader is None:
        raise BadRequest("not an importable Python file", code="invalid_artifact")
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        raise invalid_artifact("importing the module failed", exc) from exc
    return module


def _model_class(module: ModuleType, class_name: str | None) -> type:
    if class_name:
        found = getattr(module, class_name, None)
        if not pyinspect.isclass(found):
            raise BadRequest(f"the module has no class {class_name!r}", code="invalid_artifact")
        return found
    candidates = [
        value
        for value in vars(module).values()
        if pyinspect.isclass(value)
        and value.__module__ == module.__name__
        and callable(getattr(value, "predict", None))
    ]
    if len(candidates) != 1:
        raise BadRequest(
            "name the model class (option class_name): the module defines "
            f"{len(candidates)} classes with a predict method",
            code="invalid_artifact",
        )
    return candidates[0]


def _declared_signature(model_class: type, given: Signature) -> Signature:
    if not given.empty:
        return given
    declared = getattr(model_class, "signature", None)
    if isinstance(declared, dict):
        return Signature.from_dict(declared)
    return _DEFAULT_SIGNATURE


class PythonClassRuntime(TensorRuntime):
    name = "python"
    suffixes = (".py",)
    runs_code = (".py",)

    def __init__(self, spec: ArtifactSpec) -> None:
        super().__init__(spec)
        self._instance: Any = None

    @classmethod
    def inspect(cls, spec: ArtifactSpec) -> Signature:
        model_class = _model_class(_import(spec), spec.options.get("class_name"))
        return _declared_signature(model_class, spec.signature)

    async def load(self) -> None:
        self._instance = await anyio.to_thread.run_sync(self._build)

    def _build(self) -> Any:
        model_class = _model_class(_import(self.spec), self.spec.options.get("class_name"))
        self.signature = _declared_signature(model_class, self.spec.signature)
        instance = model_class()
        if callable(getattr(instance, "load", None)):
            instance.load()
        return instance

    async def unload(self) -> None:
        self._instance = None

    @property
    def ready(self) -> bool:
        return self._instance is not None

    async def infer(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        return await anyio.to_thread.run_sync(self._predict, inputs, outputs)

    def _predict(self, inputs: Tensors, outputs: Sequence[str] | None) -> Tensors:
        argument: Any = next(iter(inputs.values())) if len(inputs) == 1 else inputs
        try:
            result = self._instance.predict(argument)
        except Exception as exc:
            raise reported(
                BadRequest, "the model raised an error", code="model_error", detail=repr(exc)
            ) from exc
        names = [spec.name for spec in self.signature.outputs] or ["prediction"]
        produced = result if isinstance(result, dict) else {names[0]: result}
        wanted = outputs or list(produced)
        missing = [name for name in wanted if name not in produced]
        if missing:
            raise BadRequest(f"unknown output {missing[0]!r}", code="unknown_output")
        return {name: np.asarray(produced[name]) for name in wanted}

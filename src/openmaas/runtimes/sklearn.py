"""scikit-learn models: skops files by default, joblib or pickle only when allowed."""

from __future__ import annotations

import functools
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from openmaas.domain.errors import BadRequest
from openmaas.domain.models import Signature, TensorSpec
from openmaas.runtimes.base import ArtifactSpec, TensorRuntime, Tensors, invalid_artifact
from openmaas.runtimes.tensors import datatype_of_numpy

# Above this many rows a prediction leaves the event loop for a worker thread.
_INLINE_ROWS = 256
# Classifiers whose ``predict`` is the class of the highest ``predict_proba`` (ties
# aside): when both outputs are wanted one model call gives both. Exact types only, since
# a subclass may predict otherwise. Each scikit-learn call costs far more in input
# validation than in arithmetic for a few rows.
_ARGMAX_CLASSIFIERS = frozenset(
    {
        "sklearn.linear_model._logistic.LogisticRegression",
        "sklearn.linear_model._logistic.LogisticRegressionCV",
        "sklearn.tree._classes.DecisionTreeClassifier",
        "sklearn.tree._classes.ExtraTreeClassifier",
        "sklearn.ensemble._forest.RandomForestClassifier",
        "sklearn.ensemble._forest.ExtraTreesClassifier",
        "sklearn.naive_bayes.GaussianNB",
    }
)


@functools.lru_cache(maxsize=4096)
def _untrusted_types(path: str, modified_ns: int, size: int) -> tuple[str, ...]:
    """The types in a skops file that skops does not trust by default.

    Scanning a file costs more than loading it. A model the cache evicted and loads again
    is not scanned again: the key is the file as it is on disk (a changed file is a new
    key, and is scanned).
    """
    import skops.io as sio

    return tuple(sio.get_untrusted_types(file=Path(path)))


def _load_estimator(spec: ArtifactSpec) -> Any:
    suffix = spec.path.suffix.lower()
    if suffix == ".skops":
        import skops.io as sio

        try:
            status = spec.path.stat()
            untrusted = _untrusted_types(str(spec.path), status.st_mtime_ns, status.st_size)
            if untrusted and not spec.allow_code:
                raise BadRequest(
                    "the skops file holds types that are not trusted by default: "
                    f"{', '.join(untrusted)}; an admin must allow code for this version",
                    code="untrusted_types",
                )
            return sio.load(spec.path, trusted=list(untrusted))
        except BadRequest:
            raise
        except Exception as exc:
            raise invalid_artifact("not a readable skops file", exc) from exc
    if not spec.allow_code:
        raise BadRequest(
            f"{suffix} files run code when they load (pickle); an admin must set "
            "allow_code for this version, or upload a .skops file",
            code="code_not_allowed",
        )
    try:
        if suffix == ".joblib":
            import joblib

            return joblib.load(spec.path)
        with spec.path.open("rb") as handle:
            return pickle.load(handle)
    except Exception as exc:
        raise invalid_artifact("cannot unpickle the artifact", exc) from exc


def _signature_of(estimator: Any) -> Signature:
    if not hasattr(estimator, "predict"):
        raise BadRequest("the artifact is not a fitted estimator", code="invalid_artifact")
    features = int(getattr(estimator, "n_features_in_", -1))
    inputs = (TensorSpec("input", "FP64", (-1, features)),)
    classes = getattr(estimator, "classes_", None)
    outputs: list[TensorSpec] = []
    if classes is not None:
        label_type = datatype_of_numpy(np.asarray(classes).dtype)
        outputs.append(TensorSpec("predict", label_type, (-1,)))
        if hasattr(estimator, "predict_proba"):
            outputs.append(TensorSpec("predict_proba", "FP64", (-1, len(classes))))
    else:
        outputs.append(TensorSpec("predict", "FP64", (-1,)))
    return Signature(inputs=inputs, outputs=tuple(outputs))


class SklearnRuntime(TensorRuntime):
    name = "sklearn"
    suffixes = (".skops", ".joblib", ".pkl", ".pickle")
    runs_code = (".joblib", ".pkl", ".pickle")

    def __init__(self, spec: ArtifactSpec) -> None:
        super().__init__(spec)
        self._estimator: Any = None
        self._classes: np.ndarray | None = None  # set when predict may come from predict_proba

    @classmethod
    def inspect(cls, spec: ArtifactSpec) -> Signature:
        inferred = _signature_of(_load_estimator(spec))
        return spec.signature if not spec.signature.empty else inferred

    async def load(self) -> None:
        estimator = await anyio.to_thread.run_sync(_load_estimator, self.spec)
        if self.signature.empty:
            self.signature = _signature_of(estimator)
        self._classes = _argmax_classes(estimator)
        self._estimator = estimator

    async def unload(self) -> None:
        self._estimator = None
        self._classes = None

    @property
    def ready(self) -> bool:
        return self._estimator is not None

    async def infer(self, inputs: Tensors, outputs: Sequence[str] | None = None) -> Tensors:
        features = next(iter(inputs.values()))
        if len(features) > _INLINE_ROWS:
            return await anyio.to_thread.run_sync(self._predict, features, outputs)
        return self._predict(features, outputs)

    def _predict(self, features: np.ndarray, outputs: Sequence[str] | None) -> Tensors:
        wanted = outputs or [spec.name for spec in self.signature.outputs]
        rows = features.reshape(len(features), -1) if features.ndim != 2 else features
        both: Tensors = {}
        if self._classes is not None and "predict" in wanted and "predict_proba" in wanted:
            proba = np.asarray(self._estimator.predict_proba(rows))
            both = {"predict": self._labels(rows, proba, self._classes), "predict_proba": proba}
        result: Tensors = {}
        for name in wanted:
            if name in both:
                result[name] = both[name]
            elif name == "predict":
                result[name] = np.asarray(self._estimator.predict(rows))
            elif name == "predict_proba":
                result[name] = np.asarray(self._estimator.predict_proba(rows))
            else:
                raise BadRequest(f"unknown output {name!r}", code="unknown_output")
        return result

    def _labels(self, rows: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> np.ndarray:
        labels = classes.take(proba.argmax(axis=1))
        # Where two classes tie, argmax takes the first; the model's own predict decides.
        if proba.shape[1] == 2:
            ties = proba[:, 0] == proba[:, 1]  # the common case, at a fraction of the cost
        else:
            ties = (proba == proba.max(axis=1, keepdims=True)).sum(axis=1) > 1
        if ties.any():
            labels[ties] = self._estimator.predict(rows[ties])
        return labels


def _argmax_classes(estimator: Any) -> np.ndarray | None:
    kind = type(estimator)
    classes = getattr(estimator, "classes_", None)
    if f"{kind.__module__}.{kind.__qualname__}" not in _ARGMAX_CLASSIFIERS:
        return None
    if not isinstance(classes, np.ndarray) or classes.ndim != 1:
        return None  # multi-output models keep one array of classes per output
    return classes

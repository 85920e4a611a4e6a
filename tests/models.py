"""Small models the tests build on the spot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import skops.io as sio
from sklearn.linear_model import LinearRegression, LogisticRegression

PYTHON_MODEL = """
import numpy as np


class Doubler:
    signature = {
        "inputs": [{"name": "x", "datatype": "FP64", "shape": [-1, 1]}],
        "outputs": [{"name": "doubled", "datatype": "FP64", "shape": [-1]}],
    }

    def load(self):
        self.factor = 2.0

    def predict(self, x):
        return np.asarray(x, dtype=float).reshape(len(x)) * self.factor
"""


def classifier(features: int = 3, seed: int = 0) -> LogisticRegression:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, features))
    y = (x.sum(axis=1) > 0).astype(np.int64)
    return LogisticRegression().fit(x, y)


def regressor(seed: int = 0) -> LinearRegression:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(100, 2))
    return LinearRegression().fit(x, x @ np.array([1.5, -2.0]) + 0.5)


def skops_file(directory: Path, model: object, name: str = "model.skops") -> Path:
    path = directory / name
    sio.dump(model, path)
    return path


def onnx_file(directory: Path, model: object, features: int) -> Path:
    from skl2onnx import to_onnx

    sample = np.zeros((1, features), dtype=np.float32)
    options = {"zipmap": False} if hasattr(model, "classes_") else None
    onnx_model = to_onnx(model, sample, options=options, target_opset=17)
    path = directory / "model.onnx"
    path.write_bytes(onnx_model.SerializeToString())
    return path


def python_file(directory: Path) -> Path:
    path = directory / "doubler.py"
    path.write_text(PYTHON_MODEL)
    return path

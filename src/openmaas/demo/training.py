"""The demo models of seed 004, trained on synthetic data in a second."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import skops.io as sio
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures


def train_binary_classifier(directory: Path) -> tuple[Path, dict[str, float]]:
    """A classifier over three features: is their weighted sum above a threshold?"""
    rng = np.random.default_rng(4)
    features = rng.uniform(0.0, 1.0, size=(1000, 3))
    labels = features @ np.array([1.0, 2.0, -1.5]) + rng.normal(0, 0.1, 1000) > 0.75
    model = LogisticRegression().fit(features, labels.astype(np.int64))
    path = directory / "binary_classifier.skops"
    sio.dump(model, path)
    return path, {"accuracy": float(model.score(features, labels.astype(np.int64)))}


def train_quadratic_predictor(directory: Path) -> tuple[Path, dict[str, float]]:
    """One number in, one number out: y = 2x² - 3x + 1 learnt from noisy samples."""
    rng = np.random.default_rng(2)
    x = rng.uniform(-5.0, 5.0, size=(500, 1))
    y = 2 * x[:, 0] ** 2 - 3 * x[:, 0] + 1 + rng.normal(0, 0.05, 500)
    model = make_pipeline(PolynomialFeatures(degree=2), LinearRegression()).fit(x, y)
    path = directory / "quadratic_predictor.skops"
    sio.dump(model, path)
    return path, {"r2": float(model.score(x, y))}

"""ModelRoute documents in seed 003's shape, built briefly for the tests."""

from __future__ import annotations

from typing import Any


def route(name: str, rules: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.matrixinfer.ai/v1alpha1",
        "kind": "ModelRoute",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"routes": rules, **spec},
    }


def to(destination: str, **fields: Any) -> dict[str, Any]:
    """A rule's destination and its other fields (match, weight, timeout, retries)."""
    return {"destination": ref(destination), **fields}


def ref(destination: str) -> dict[str, Any]:
    return {"modelServerRef": {"name": destination}}

"""OpenMaaS: Models as a Service."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Client", "ClientError", "Settings", "__version__", "create_app"]

if TYPE_CHECKING:
    from openmaas.app import create_app
    from openmaas.client import Client, ClientError
    from openmaas.settings import Settings

# Imported on first use, so `import openmaas` in a client stays light.
_LAZY = {
    "Client": "openmaas.client",
    "ClientError": "openmaas.client",
    "Settings": "openmaas.settings",
    "create_app": "openmaas.app",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'openmaas' has no attribute {name!r}")

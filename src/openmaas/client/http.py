"""``Client``: register, list, resolve and delete models over HTTP."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

ProgressCallback = Callable[[int, int], None]
"""Called with (bytes sent so far, total bytes) while an artifact uploads."""


class ClientError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class _ProgressReader:
    """A file wrapper that reports how much of it httpx has read."""

    def __init__(self, handle: IO[bytes], total: int, callback: ProgressCallback | None) -> None:
        self._handle = handle
        self._total = total
        self._sent = 0
        self._callback = callback

    def __getattr__(self, name: str) -> Any:
        # fileno, seek and tell let httpx send a Content-Length instead of chunks.
        return getattr(self._handle, name)

    def read(self, size: int = -1) -> bytes:
        chunk = self._handle.read(size)
        self._sent += len(chunk)
        if self._callback is not None:
            self._callback(self._sent, self._total)
        return chunk


class Client:
    def __init__(self, url: str, key: str | None = None, *, timeout: float = 120.0) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            raise ClientError(
                response.status_code,
                str(body.get("code", "error")),
                str(body.get("message", response.text)),
            )
        return None if response.status_code == 204 else response.json()

    def list_models(self, **filters: Any) -> list[dict[str, Any]]:
        params = {k: v for k, v in filters.items() if v is not None}
        return list(self._call("GET", "/models", params=params)["models"])

    def stats(self) -> dict[str, Any]:
        return dict(self._call("GET", "/models/stats"))

    def get_model(self, name: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/models/{name}"))

    def create_model(
        self,
        name: str,
        *,
        description: str = "",
        task: str = "other",
        tags: list[str] | None = None,
    ) -> dict[str, Any]:
        body = {"name": name, "description": description, "task": task, "tags": tags or []}
        return dict(self._call("POST", "/models", json=body))

    def resolve(self, ref: str) -> dict[str, Any]:
        """The version that ``name``, ``name/3`` or ``name@alias`` names."""
        return dict(self._call("GET", f"/models/resolve/{ref}"))

    def delete_model(self, name: str) -> None:
        self._call("DELETE", f"/models/{name}")

    def delete_version(self, name: str, version: int | str) -> None:
        self._call("DELETE", f"/models/{name}/versions/{version}")

    def set_alias(self, name: str, alias: str, version: int) -> dict[str, Any]:
        return dict(self._call("PUT", f"/models/{name}/aliases/{alias}", json={"version": version}))

    def delete_alias(self, name: str, alias: str) -> None:
        self._call("DELETE", f"/models/{name}/aliases/{alias}")

    def deploy(
        self,
        model_name: str,
        version: int | str | None = None,
        *,
        endpoint_name: str | None = None,
        **config: Any,
    ) -> dict[str, Any]:
        body = {"model_name": model_name, "version": version, "endpoint_name": endpoint_name}
        body.update(config)
        return dict(self._call("POST", "/deployments/deploy", json=body))

    def undeploy(
        self,
        *,
        endpoint_name: str | None = None,
        model_name: str | None = None,
        version: int | str | None = None,
    ) -> list[dict[str, Any]]:
        body = {"endpoint_name": endpoint_name, "model_name": model_name, "version": version}
        return list(self._call("POST", "/deployments/undeploy", json=body)["undeployed"])

    def deployments(self, status: str | None = None) -> list[dict[str, Any]]:
        params = {"status": status} if status else {}
        return list(self._call("GET", "/deployments", params=params)["deployments"])

    def routes(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Every route, or those of one namespace."""
        params = {"namespace": namespace} if namespace else {}
        return list(self._call("GET", "/routes", params=params)["routes"])

    def route(self, name: str, namespace: str = "default") -> dict[str, Any]:
        return dict(self._call("GET", f"/routes/{name}", params={"namespace": namespace}))

    def apply_route(self, document: dict[str, Any]) -> dict[str, Any]:
        """Create the ModelRoute, or replace the one of the same name and namespace."""
        metadata = document.get("metadata") or {}
        name = str(metadata.get("name", ""))
        params = {"namespace": str(metadata.get("namespace") or "default")}
        exists = False
        if name:
            exists = self._http.get(f"/routes/{name}", params=params).status_code == 200
        if exists:
            return dict(self._call("PUT", f"/routes/{name}", json=document, params=params))
        return dict(self._call("POST", "/routes", json=document))

    def delete_route(self, name: str, namespace: str = "default") -> None:
        self._call("DELETE", f"/routes/{name}", params={"namespace": namespace})

    def plans(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/plans")["plans"])

    def plan(self, name: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/plans/{name}"))

    def apply_plan(self, document: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create the plan, or change the one of the same name; and whether it was new."""
        name = str(document.get("name", ""))
        exists = self._http.get(f"/plans/{name}").status_code == 200 if name else False
        if exists:
            changes = {k: v for k, v in document.items() if k != "name"}
            return dict(self._call("PATCH", f"/plans/{name}", json=changes)), False
        return dict(self._call("POST", "/plans", json=document)), True

    def delete_plan(self, name: str) -> None:
        self._call("DELETE", f"/plans/{name}")

    def _text(self, path: str, params: dict[str, Any]) -> str:
        """A file the server renders (CSV, HTML): its text, or the JSON error raised."""
        response = self._http.get(path, params=params)
        if response.status_code >= 400:
            self._call("GET", path, params=params)  # raises the error it answers
        return response.text

    def invoices(self, month: str | None = None, user_id: int | None = None) -> list[Any]:
        params = {k: v for k, v in {"month": month, "user_id": user_id}.items() if v}
        return list(self._call("GET", "/invoices", params=params)["invoices"])

    def invoice(self, number: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/invoices/{number}"))

    def invoice_file(self, number: str, format: str) -> str:
        return self._text(f"/invoices/{number}", {"format": format})

    def close_month(self, month: str | None = None) -> dict[str, Any]:
        return dict(self._call("POST", "/invoices/close", json={"month": month}))

    def usage_export(self, format: str, **filters: Any) -> str:
        params = {"format": format, **{k: v for k, v in filters.items() if v is not None}}
        return self._text("/usage/export", params)

    def upload_version(
        self,
        name: str,
        path: str | Path,
        *,
        runtime: str | None = None,
        description: str = "",
        metrics: dict[str, float] | None = None,
        signature: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        allow_code: bool = False,
        progress: ProgressCallback | None = None,
    ) -> dict[str, Any]:
        path = Path(path)
        fields: dict[str, str] = {"description": description, "allow_code": str(allow_code).lower()}
        if runtime:
            fields["runtime"] = runtime
        for field, value in (("metrics", metrics), ("signature", signature), ("options", options)):
            if value is not None:
                fields[field] = json.dumps(value)
        total = path.stat().st_size
        with path.open("rb") as handle:
            reader = _ProgressReader(handle, total, progress)
            files = {"artifact": (path.name, reader, "application/octet-stream")}
            return dict(self._call("POST", f"/models/{name}/versions", data=fields, files=files))

    def register(
        self,
        name: str,
        model: Any,
        *,
        description: str = "",
        task: str | None = None,
        tags: list[str] | None = None,
        **version_fields: Any,
    ) -> dict[str, Any]:
        """Register a fitted scikit-learn estimator or a model file as a new version.

        The model is created first when it does not exist yet.
        """
        try:
            self.get_model(name)
        except ClientError as exc:
            if exc.status != 404:
                raise
            self.create_model(
                name, description=description, task=task or _guess_task(model), tags=tags
            )
        if isinstance(model, str | Path):
            return self.upload_version(name, model, description=description, **version_fields)
        import skops.io as sio

        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / f"{name}.skops"
            sio.dump(model, path)
            return self.upload_version(name, path, description=description, **version_fields)


def _guess_task(model: Any) -> str:
    if isinstance(model, str | Path):
        return "other"
    estimator_type = getattr(model, "_estimator_type", None)
    if estimator_type is None and hasattr(model, "__sklearn_tags__"):
        estimator_type = getattr(model.__sklearn_tags__(), "estimator_type", None)
    return {"classifier": "classification", "regressor": "regression"}.get(
        str(estimator_type), "other"
    )

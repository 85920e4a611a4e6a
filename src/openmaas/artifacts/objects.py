"""Where artifact files live: the contract of an object store, and the local folder one.

Objects are addressed by a relative key, ``{model}/{version}/{filename}``, the same in
every store, so a store can be copied to another one key by key
(``openmaas artifacts migrate``). Failures to reach a store are
``ArtifactStoreUnavailable`` (503): a model that needs a download cannot load now, but
may a little later.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

import anyio

from openmaas.domain.errors import BadRequest, ServiceUnavailable

CHUNK_BYTES = 8 * 1024 * 1024
RETRY_AFTER_S = 5


class ArtifactStoreUnavailable(ServiceUnavailable):
    """The artifact store did not answer (or refused us); retrying later may work."""

    def __init__(self, message: str) -> None:
        super().__init__(
            message,
            code="artifact_store_unavailable",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )


class ObjectStore(Protocol):
    """The few operations the platform needs of a place that keeps artifact files."""

    @property
    def location(self) -> str:
        """Where the objects are, for people (no credentials)."""
        ...

    def local_path(self, key: str) -> Path | None:
        """The object as a file on this machine's disk, when the store is a folder."""
        ...

    async def put_file(self, key: str, path: Path, *, move: bool) -> None:
        """Store a file under ``key``, streaming it (moved instead when ``move`` allows)."""
        ...

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        """Store what ``chunks`` yields under ``key``, without holding it all in memory."""
        ...

    def read(self, key: str) -> AsyncIterator[bytes]:
        """The object's bytes, chunk by chunk."""
        ...

    async def size(self, key: str) -> int | None:
        """The object's size in bytes, None when there is no such object."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose key starts with ``prefix``; returns how many."""
        ...

    async def close(self) -> None: ...


class LocalObjects:
    """Objects as files under one folder: the embedded default."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    @property
    def location(self) -> str:
        return str(self.root)

    def local_path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise BadRequest("artifact path escapes the store", code="invalid_filename")
        return path

    async def put_file(self, key: str, path: Path, *, move: bool) -> None:
        target = self.local_path(key)

        def place() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            if move:
                os.replace(path, target)
            else:
                shutil.copyfile(path, target)

        await anyio.to_thread.run_sync(place)

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        target = self.local_path(key)
        partial = target.with_name(f".{target.name}.partial")
        await anyio.to_thread.run_sync(lambda: target.parent.mkdir(parents=True, exist_ok=True))
        handle = await anyio.to_thread.run_sync(partial.open, "wb")
        try:
            async for chunk in chunks:
                await anyio.to_thread.run_sync(handle.write, chunk)
        except BaseException:
            await anyio.to_thread.run_sync(handle.close)
            partial.unlink(missing_ok=True)
            raise
        await anyio.to_thread.run_sync(handle.close)
        os.replace(partial, target)

    async def read(self, key: str) -> AsyncIterator[bytes]:
        path = self.local_path(key)
        try:
            handle = await anyio.to_thread.run_sync(path.open, "rb")
        except FileNotFoundError as exc:
            raise ArtifactStoreUnavailable(f"artifact {key!r} is missing from {self.root}") from exc
        try:
            while chunk := await anyio.to_thread.run_sync(handle.read, CHUNK_BYTES):
                yield chunk
        finally:
            await anyio.to_thread.run_sync(handle.close)

    async def size(self, key: str) -> int | None:
        path = self.local_path(key)
        return path.stat().st_size if path.is_file() else None

    async def delete_prefix(self, prefix: str) -> int:
        target = self.local_path(prefix.rstrip("/"))
        if not target.exists() or target == self.root:
            return 0

        def remove() -> int:
            count = sum(1 for p in target.rglob("*") if p.is_file()) if target.is_dir() else 1
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
            return count

        return await anyio.to_thread.run_sync(remove)

    async def close(self) -> None:
        return None

"""This replica's disk cache of artifacts downloaded from a bucket, keyed by SHA-256.

An entry is ``{root}/{sha256[:2]}/{sha256}/{filename}``: the file keeps its name, since
runtimes recognise formats by suffix and unpack archives next to it. A download is
written beside the cache, hashed as it streams, and renamed into place only when its
size and SHA-256 match the registry's; a corrupt or truncated one is deleted and fetched
again, never loaded. A cached file is hashed again before each load, so a file damaged on
disk is fetched anew too. Past the disk budget, the least recently used entries go.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio

from openmaas.domain.errors import BadGateway

logger = logging.getLogger("openmaas.artifacts")

_FETCH_ATTEMPTS = 2
_HASH_CHUNK = 8 * 1024 * 1024


class ArtifactCorrupt(BadGateway):
    """The store keeps bytes that are not the artifact that was registered."""


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _tree_bytes(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(dirpath) / name).stat().st_size
    return total


class DownloadCache:
    def __init__(self, root: Path, *, budget_bytes: int) -> None:
        self.root = root.resolve()
        self.budget_bytes = budget_bytes
        self.incoming = self.root / ".incoming"
        self._locks: dict[str, asyncio.Lock] = {}
        self._busy: set[str] = set()  # entries being fetched or loaded: never evicted

    def entry_dir(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    async def file_for(
        self,
        *,
        sha256: str,
        size: int,
        filename: str,
        fetch: Callable[[], AsyncIterator[bytes]],
    ) -> Path:
        """A verified local copy of the artifact, downloaded with ``fetch`` when needed."""
        lock = self._locks.setdefault(sha256, asyncio.Lock())
        async with lock:
            self._busy.add(sha256)
            try:
                path = self.entry_dir(sha256) / filename
                if await anyio.to_thread.run_sync(self._intact, path, sha256, size):
                    os.utime(self.entry_dir(sha256))  # recently used
                    return path
                for attempt in range(1, _FETCH_ATTEMPTS + 1):
                    got = await self._download(fetch, path, sha256, size)
                    if got is None:
                        await anyio.to_thread.run_sync(self._evict_over_budget)
                        return path
                    logger.warning(
                        "artifact %s (%s) arrived corrupt (%s), attempt %d of %d",
                        filename,
                        sha256[:12],
                        got,
                        attempt,
                        _FETCH_ATTEMPTS,
                    )
                raise ArtifactCorrupt(
                    f"the artifact store holds a corrupt copy of {filename!r} ({got}); "
                    "it was not loaded",
                    code="artifact_corrupt",
                )
            finally:
                self._busy.discard(sha256)

    def _intact(self, path: Path, sha256: str, size: int) -> bool:
        if not path.is_file():
            return False
        if path.stat().st_size == size and _sha256_of(path) == sha256:
            return True
        logger.warning("cached artifact %s is damaged; fetching it again", path)
        shutil.rmtree(path.parent, ignore_errors=True)
        return False

    async def _download(
        self,
        fetch: Callable[[], AsyncIterator[bytes]],
        path: Path,
        sha256: str,
        size: int,
    ) -> str | None:
        """Fetch into place; None when it arrived whole, else what was wrong with it."""
        scratch = self.incoming / uuid.uuid4().hex
        await anyio.to_thread.run_sync(lambda: scratch.mkdir(parents=True, exist_ok=True))
        partial = scratch / path.name
        digest = hashlib.sha256()
        received = 0
        try:
            handle = await anyio.to_thread.run_sync(partial.open, "wb")
            try:
                async for chunk in fetch():
                    received += len(chunk)
                    if received > size:
                        return f"more than the {size} bytes registered"
                    digest.update(chunk)
                    await anyio.to_thread.run_sync(handle.write, chunk)
            finally:
                await anyio.to_thread.run_sync(handle.close)
            if received != size:
                return f"{received} bytes of {size}"
            if digest.hexdigest() != sha256:
                return "SHA-256 mismatch"

            def place() -> None:
                path.parent.mkdir(parents=True, exist_ok=True)
                os.replace(partial, path)

            await anyio.to_thread.run_sync(place)
            return None
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    async def adopt(self, source: Path, *, sha256: str) -> None:
        """Move a file already verified (an upload just hashed) into the cache."""

        def place() -> None:
            target = self.entry_dir(sha256) / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)

        await anyio.to_thread.run_sync(place)
        await anyio.to_thread.run_sync(self._evict_over_budget)

    def _evict_over_budget(self) -> None:
        if not self.root.is_dir():
            return
        entries = [
            entry
            for shard in self.root.iterdir()
            if shard.is_dir() and shard.name != ".incoming"
            for entry in shard.iterdir()
            if entry.is_dir()
        ]
        sizes = {entry: _tree_bytes(entry) for entry in entries}
        total = sum(sizes.values())
        if total <= self.budget_bytes:
            return
        for entry in sorted(entries, key=lambda e: e.stat().st_mtime):
            if total <= self.budget_bytes:
                break
            if entry.name in self._busy:
                continue
            shutil.rmtree(entry, ignore_errors=True)
            total -= sizes[entry]
            logger.info("evicted artifact %s from the disk cache", entry.name[:12])

    def clear_incoming(self) -> None:
        """Downloads a crashed process left half done."""
        cutoff = time.time() - 3600
        if self.incoming.is_dir():
            for scratch in self.incoming.iterdir():
                with contextlib.suppress(OSError):
                    if scratch.stat().st_mtime < cutoff:
                        shutil.rmtree(scratch, ignore_errors=True)

"""Artifact files, addressed by model name and version, with hash and size."""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import anyio

from openmaas.artifacts.cache import DownloadCache
from openmaas.artifacts.objects import LocalObjects, ObjectStore
from openmaas.domain.errors import BadRequest, OpenMaaSError, PayloadTooLarge
from openmaas.domain.models import validate_name

logger = logging.getLogger("openmaas.artifacts")

# A file name, never a path: no separators, no leading dot, nothing a shell or URL mangles.
_SAFE_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")


def safe_filename(filename: str | None) -> str:
    name = filename or ""
    if not _SAFE_FILENAME.match(name) or ".." in name:
        raise BadRequest(
            f"invalid artifact file name {name!r}: a plain name of letters, digits, "
            "'.', '_' or '-', with no directory part",
            code="invalid_filename",
        )
    return name


@dataclass(frozen=True, slots=True)
class StagedArtifact:
    """An upload written to disk and hashed, not yet filed under a version."""

    filename: str
    path: Path
    sha256: str
    size: int


class ArtifactStore:
    """Artifacts for the registry and the serving layer, whichever store keeps them.

    Uploads are staged on local disk (hashed and size-checked as they stream in, so a
    runtime can inspect them), then filed in the store. A bucket's artifacts are loaded
    from this replica's disk cache, verified by SHA-256; a folder's are loaded in place.
    """

    def __init__(
        self,
        objects: ObjectStore,
        *,
        staging: Path,
        max_bytes: int,
        cache: DownloadCache | None = None,
    ) -> None:
        self.objects = objects
        self.staging = staging.resolve()
        self.max_bytes = max_bytes
        self.cache = cache

    @property
    def location(self) -> str:
        return self.objects.location

    async def stage(self, chunks: AsyncIterator[bytes], *, filename: str) -> StagedArtifact:
        """Stream an upload to disk, hashing it and enforcing the size limit."""
        filename = safe_filename(filename)
        incoming = self.staging / uuid.uuid4().hex
        await anyio.to_thread.run_sync(lambda: incoming.mkdir(parents=True, exist_ok=True))
        # The staged file keeps its name: runtimes recognise formats by suffix.
        path = incoming / filename
        digest = hashlib.sha256()
        size = 0
        try:
            handle = await anyio.to_thread.run_sync(path.open, "wb")
            try:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise PayloadTooLarge(
                            f"artifact larger than the limit of {self.max_bytes} bytes",
                            code="artifact_too_large",
                        )
                    # Hashing a chunk costs as much as writing it: both off the event loop.
                    await anyio.to_thread.run_sync(_hash_and_write, digest, handle, chunk)
            finally:
                await anyio.to_thread.run_sync(handle.close)
            if size == 0:
                raise BadRequest("the artifact file is empty", code="empty_artifact")
        except BaseException:
            shutil.rmtree(incoming, ignore_errors=True)
            raise
        return StagedArtifact(filename, path, digest.hexdigest(), size)

    def discard(self, staged: StagedArtifact) -> None:
        shutil.rmtree(staged.path.parent, ignore_errors=True)

    async def publish(self, staged: StagedArtifact, *, model_name: str, version: int) -> str:
        """File a staged artifact under its model and version; returns its key."""
        key = artifact_key(model_name, version, staged.filename)
        await self.objects.put_file(key, staged.path, move=True)
        if self.cache is not None and staged.path.exists():
            # This replica need not download what it has just uploaded.
            await self.cache.adopt(staged.path, sha256=staged.sha256)
        self.discard(staged)
        return key

    async def local_file(self, key: str, *, sha256: str, size: int) -> Path:
        """The artifact as a file on this machine, ready for a runtime to load."""
        in_place = self.objects.local_path(key)
        if in_place is not None:
            return in_place
        assert self.cache is not None, "a remote store always has a download cache"
        return await self.cache.file_for(
            sha256=sha256,
            size=size,
            filename=PurePosixPath(key).name,
            fetch=lambda: self.objects.read(key),
        )

    async def remove_version(self, model_name: str, version: int) -> None:
        await self._remove(f"{validate_name(model_name)}/{version}")

    async def remove_model(self, model_name: str) -> None:
        await self._remove(validate_name(model_name))

    async def _remove(self, prefix: str) -> None:
        # The registry has already forgotten the version; an object left behind costs
        # space, not correctness, so a store that fails here is logged, not raised.
        try:
            await self.objects.delete_prefix(prefix)
        except OpenMaaSError as exc:
            logger.warning("could not delete %s/%s: %s", self.location, prefix, exc.message)

    async def close(self) -> None:
        await self.objects.close()


def artifact_key(model_name: str, version: int, filename: str) -> str:
    return f"{validate_name(model_name)}/{version}/{safe_filename(filename)}"


def open_artifact_store(
    url: str,
    *,
    data_dir: Path,
    max_bytes: int,
    cache_bytes: int,
    s3_options: dict[str, Any] | None = None,
) -> ArtifactStore:
    """The store an artifact URL names: a folder (path or ``file://``) or ``s3://...``.

    Empty means the ``artifacts`` folder of the data directory, as before buckets existed.
    """
    data_dir = data_dir.resolve()
    if url.startswith("s3://"):
        from openmaas.artifacts.s3 import S3Objects

        cache = DownloadCache(data_dir / "artifact-cache", budget_bytes=cache_bytes)
        return ArtifactStore(
            S3Objects(url, **(s3_options or {})),
            staging=cache.incoming,
            max_bytes=max_bytes,
            cache=cache,
        )
    if "://" in url and not url.startswith("file://"):
        raise BadRequest(
            f"unsupported artifact URL {url!r}: a folder, file://... or s3://bucket/prefix",
            code="invalid_url",
        )
    root = Path(url.removeprefix("file://")).expanduser() if url else data_dir / "artifacts"
    root = root.resolve()
    return ArtifactStore(LocalObjects(root), staging=root / ".incoming", max_bytes=max_bytes)


def _hash_and_write(digest: Any, handle: BinaryIO, chunk: bytes) -> None:
    digest.update(chunk)
    handle.write(chunk)

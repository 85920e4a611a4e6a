"""Artifact files on disk, addressed by model name and version, with hash and size."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio

from openmaas.domain.errors import BadRequest, PayloadTooLarge
from openmaas.domain.models import validate_name

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
    def __init__(self, root: Path, *, max_bytes: int) -> None:
        self.root = root.resolve()
        self.max_bytes = max_bytes

    async def stage(self, chunks: AsyncIterator[bytes], *, filename: str) -> StagedArtifact:
        """Stream an upload to disk, hashing it and enforcing the size limit."""
        filename = safe_filename(filename)
        incoming = self.root / ".incoming" / uuid.uuid4().hex
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
                    digest.update(chunk)
                    await anyio.to_thread.run_sync(handle.write, chunk)
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

    def publish(self, staged: StagedArtifact, *, model_name: str, version: int) -> str:
        """File a staged artifact under its model and version; returns its relative path."""
        target = self.root / validate_name(model_name) / str(version) / staged.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged.path, target)
        self.discard(staged)
        return f"{model_name}/{version}/{staged.filename}"

    def path_of(self, relative_path: str) -> Path:
        path = (self.root / relative_path).resolve()
        if not path.is_relative_to(self.root):
            raise BadRequest("artifact path escapes the store", code="invalid_filename")
        return path

    def remove_version(self, model_name: str, version: int) -> None:
        shutil.rmtree(self.root / validate_name(model_name) / str(version), ignore_errors=True)

    def remove_model(self, model_name: str) -> None:
        shutil.rmtree(self.root / validate_name(model_name), ignore_errors=True)

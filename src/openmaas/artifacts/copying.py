"""Copying artifacts from one store to another (a folder to a bucket, say), verified.

Each object streams through, hashed on the way: a copy whose SHA-256 is not the one the
registry recorded is deleted again and reported, never left in the target. An object
the target already holds at the right size is skipped, so an interrupted copy resumes.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from openmaas.artifacts.objects import ObjectStore


@dataclass(frozen=True, slots=True)
class ArtifactRecord:
    key: str
    sha256: str
    size: int


@dataclass
class CopyReport:
    copied: int = 0
    skipped: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # key -> why


async def copy_artifacts(
    records: list[ArtifactRecord],
    source: ObjectStore,
    target: ObjectStore,
    *,
    progress: Callable[[int], None] = lambda _n: None,
) -> CopyReport:
    """Copy every record's object; ``progress`` is told each chunk's byte count."""
    report = CopyReport()
    for record in records:
        if await target.size(record.key) == record.size:
            report.skipped += 1
            progress(record.size)
            continue
        digest = hashlib.sha256()

        async def hashed(key: str = record.key, digest: Any = digest) -> AsyncIterator[bytes]:
            async for chunk in source.read(key):
                digest.update(chunk)
                progress(len(chunk))
                yield chunk

        try:
            await target.put_stream(record.key, hashed())
        except Exception as exc:  # a broken source or target: report it, go on
            report.failed[record.key] = str(getattr(exc, "message", exc))
            continue
        if digest.hexdigest() != record.sha256:
            await target.delete_prefix(record.key.rsplit("/", 1)[0])  # the version folder
            report.failed[record.key] = "the source's bytes do not match the recorded SHA-256"
            continue
        report.copied += 1
    return report

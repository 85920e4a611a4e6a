"""The disk cache of downloaded artifacts: verified by SHA-256, refetched, bounded."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from openmaas.artifacts import ArtifactCorrupt, DownloadCache


def _source(*answers: bytes) -> tuple[Callable[[], AsyncIterator[bytes]], list[int]]:
    """A fetch that answers each call with the next bytes (in two chunks), and counts."""
    calls: list[int] = []

    async def fetch() -> AsyncIterator[bytes]:
        body = answers[min(len(calls), len(answers) - 1)]
        calls.append(1)
        yield body[: len(body) // 2]
        yield body[len(body) // 2 :]

    return fetch, calls


def _get(cache: DownloadCache, body: bytes, fetch: Callable[[], AsyncIterator[bytes]]) -> Path:
    sha = hashlib.sha256(body).hexdigest()
    return asyncio.run(cache.file_for(sha256=sha, size=len(body), filename="m.onnx", fetch=fetch))


def test_a_corrupt_download_is_fetched_again_and_a_damaged_file_replaced(tmp_path: Path) -> None:
    cache = DownloadCache(tmp_path, budget_bytes=10**6)
    good = b"the artifact" * 10
    fetch, calls = _source(good[:-1] + b"X", good)
    path = _get(cache, good, fetch)
    assert path.read_bytes() == good and len(calls) == 2
    assert path.name == "m.onnx" and path.parent.name == hashlib.sha256(good).hexdigest()
    assert _get(cache, good, fetch) == path and len(calls) == 2  # cached: no download
    path.write_bytes(good[:-1] + b"Y")  # damaged on disk, same size
    assert _get(cache, good, fetch).read_bytes() == good and len(calls) == 3
    assert not any((tmp_path / ".incoming").iterdir())


def test_wrong_bytes_every_time_are_refused_and_never_kept(tmp_path: Path) -> None:
    cache = DownloadCache(tmp_path, budget_bytes=10**6)
    good = b"the artifact" * 10
    for wrong in (good[:50], good + b"more", good[:-1] + b"Z"):
        fetch, calls = _source(wrong)
        with pytest.raises(ArtifactCorrupt) as refused:
            _get(cache, good, fetch)
        assert refused.value.code == "artifact_corrupt" and refused.value.status_code == 502
        assert len(calls) == 2
        assert not cache.entry_dir(hashlib.sha256(good).hexdigest()).exists()


def test_the_least_recently_used_artifacts_leave_past_the_budget(tmp_path: Path) -> None:
    cache = DownloadCache(tmp_path, budget_bytes=250)
    bodies = [bytes([n]) * 100 for n in range(3)]
    paths = []
    for body in bodies:
        fetch, _calls = _source(body)
        paths.append(_get(cache, body, fetch))
    assert not paths[0].exists()  # 300 bytes > 250: the oldest went
    assert paths[1].exists() and paths[2].exists()

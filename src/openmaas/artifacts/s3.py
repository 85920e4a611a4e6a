"""Artifacts in an S3-compatible bucket (Amazon S3, MinIO, Ceph, ...), through obstore.

obstore (the Python binding of Rust's ``object_store``) streams uploads from files and
async iterators with automatic multipart uploads, streams downloads, retries with
backoff, and reads the usual ``AWS_*`` variables (keys, region, endpoint, web identity
tokens) unless settings override them. It is the ``s3`` extra: imported only when the
artifact URL names a bucket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

from openmaas.artifacts.objects import CHUNK_BYTES, ArtifactStoreUnavailable
from openmaas.domain.errors import BadRequest

if TYPE_CHECKING:
    from obstore.store import S3Store

# Requests are bounded by progress (a read timeout), not by duration: a large artifact may
# rightly take minutes to download, a stalled one fails after ``timeout_s``.
_WHOLE_REQUEST = timedelta(hours=6)
_MAX_MESSAGE = 300


def parse_bucket_url(url: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> (bucket, prefix without slashes)."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise BadRequest(f"not a bucket URL: {url!r} (s3://bucket/prefix)", code="invalid_url")
    return parts.netloc, parts.path.strip("/")


def _short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text[:_MAX_MESSAGE]


class S3Objects:
    def __init__(
        self,
        url: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        try:
            from obstore.store import S3Store
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise RuntimeError(
                "artifacts in a bucket need the s3 extra: pip install 'openmaas[s3]'"
            ) from exc
        self.bucket, self.prefix = parse_bucket_url(url)
        self.url = url
        config: dict[str, Any] = {}
        if endpoint_url:
            config["endpoint"] = endpoint_url
        if region:
            config["region"] = region
        if access_key_id:
            config["access_key_id"] = access_key_id
        if secret_access_key:
            config["secret_access_key"] = secret_access_key
        stall = timedelta(seconds=timeout_s)
        client: dict[str, Any] = {
            "connect_timeout": timedelta(seconds=min(timeout_s, 5.0)),
            "read_timeout": stall,
            "timeout": _WHOLE_REQUEST,
        }
        if endpoint_url and endpoint_url.startswith("http://"):
            client["allow_http"] = True
        retry: dict[str, Any] = {
            "max_retries": 3,
            "retry_timeout": stall,
            "backoff": {
                "init_backoff": timedelta(milliseconds=100),
                "max_backoff": timedelta(seconds=2),
                "base": 2,
            },
        }
        self.store: S3Store = S3Store(
            self.bucket,
            prefix=self.prefix or None,
            config=config,  # type: ignore[arg-type]
            client_options=client,  # type: ignore[arg-type]
            retry_config=retry,  # type: ignore[arg-type]
        )

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def local_path(self, key: str) -> Path | None:
        return None

    def _failed(self, action: str, key: str, exc: Exception) -> NoReturn:
        raise ArtifactStoreUnavailable(
            f"the artifact store {self.location} could not {action} {key!r}: {_short(exc)}"
        ) from exc

    async def put_file(self, key: str, path: Path, *, move: bool) -> None:
        import obstore

        try:
            await obstore.put_async(self.store, key, path, chunk_size=CHUNK_BYTES)
        except Exception as exc:
            self._failed("store", key, exc)

    async def put_stream(self, key: str, chunks: AsyncIterator[bytes]) -> None:
        import obstore

        try:
            await obstore.put_async(self.store, key, chunks, chunk_size=CHUNK_BYTES)
        except ArtifactStoreUnavailable:
            raise  # the source failed, not this store
        except Exception as exc:
            self._failed("store", key, exc)

    async def read(self, key: str) -> AsyncIterator[bytes]:
        import obstore

        try:
            result = await obstore.get_async(self.store, key)
            async for chunk in result.stream(min_chunk_size=CHUNK_BYTES):
                yield bytes(chunk)
        except FileNotFoundError as exc:  # obstore's NotFoundError
            raise ArtifactStoreUnavailable(
                f"artifact {key!r} is missing from {self.location}"
            ) from exc
        except Exception as exc:
            self._failed("read", key, exc)

    async def size(self, key: str) -> int | None:
        import obstore

        try:
            meta = await obstore.head_async(self.store, key)
        except FileNotFoundError:
            return None
        except Exception as exc:
            self._failed("find", key, exc)
        return int(meta["size"])

    async def delete_prefix(self, prefix: str) -> int:
        import obstore

        deleted = 0
        try:
            async for batch in obstore.list(self.store, prefix=prefix, chunk_size=500):
                paths = [meta["path"] for meta in batch]
                if paths:
                    await obstore.delete_async(self.store, paths)
                    deleted += len(paths)
        except Exception as exc:
            self._failed("delete", prefix, exc)
        return deleted

    async def close(self) -> None:
        return None

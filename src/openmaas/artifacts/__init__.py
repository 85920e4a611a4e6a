"""Artifact files: stored once (a folder or a bucket), addressed by model and version,
checked by SHA-256."""

from openmaas.artifacts.cache import ArtifactCorrupt, DownloadCache
from openmaas.artifacts.objects import ArtifactStoreUnavailable, LocalObjects, ObjectStore
from openmaas.artifacts.store import (
    ArtifactStore,
    StagedArtifact,
    artifact_key,
    open_artifact_store,
    safe_filename,
)

__all__ = [
    "ArtifactCorrupt",
    "ArtifactStore",
    "ArtifactStoreUnavailable",
    "DownloadCache",
    "LocalObjects",
    "ObjectStore",
    "StagedArtifact",
    "artifact_key",
    "open_artifact_store",
    "safe_filename",
]

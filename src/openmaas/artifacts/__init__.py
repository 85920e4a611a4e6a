"""Artifact files: stored once, addressed by model and version, checked by SHA-256."""

from openmaas.artifacts.store import ArtifactStore, StagedArtifact, safe_filename

__all__ = ["ArtifactStore", "StagedArtifact", "safe_filename"]

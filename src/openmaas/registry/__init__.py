"""Models, versions, artifacts and aliases."""

from openmaas.registry.service import RegistryService, VersionUpload

__all__ = ["RegistryService", "VersionUpload"]

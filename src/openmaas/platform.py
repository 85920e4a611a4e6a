"""The services of one running platform, built once from one ``Settings``."""

from __future__ import annotations

from dataclasses import dataclass

from openmaas.access import AccessService
from openmaas.artifacts import ArtifactStore
from openmaas.registry import RegistryService
from openmaas.settings import Settings
from openmaas.store import Database


@dataclass
class Platform:
    settings: Settings
    db: Database
    artifacts: ArtifactStore
    registry: RegistryService
    access: AccessService

    @classmethod
    def build(cls, settings: Settings) -> Platform:
        db = Database(settings.database_url)
        artifacts = ArtifactStore(settings.artifacts_dir, max_bytes=settings.max_artifact_bytes)
        return cls(
            settings=settings,
            db=db,
            artifacts=artifacts,
            registry=RegistryService(db, artifacts),
            access=AccessService(db, admin_key=settings.admin_key),
        )

    async def start(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        if self.settings.migrate_on_start:
            await self.db.migrate()

    async def stop(self) -> None:
        await self.db.close()

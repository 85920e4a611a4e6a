"""The services of one running platform, built once from one ``Settings``."""

from __future__ import annotations

from dataclasses import dataclass

from openmaas.access import AccessService
from openmaas.artifacts import ArtifactStore
from openmaas.registry import RegistryService
from openmaas.serving import ServingService
from openmaas.settings import Settings
from openmaas.store import Database


@dataclass
class Platform:
    settings: Settings
    db: Database
    artifacts: ArtifactStore
    registry: RegistryService
    access: AccessService
    serving: ServingService

    @classmethod
    def build(cls, settings: Settings) -> Platform:
        db = Database(settings.database_url)
        artifacts = ArtifactStore(settings.artifacts_dir, max_bytes=settings.max_artifact_bytes)
        registry = RegistryService(db, artifacts)
        serving = ServingService(
            db,
            registry,
            cache_bytes=settings.model_cache_bytes,
            sync_interval_s=settings.sync_interval_s,
        )
        return cls(
            settings=settings,
            db=db,
            artifacts=artifacts,
            registry=registry,
            access=AccessService(db, admin_key=settings.admin_key),
            serving=serving,
        )

    async def start(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        if self.settings.migrate_on_start:
            await self.db.migrate()

    async def start_serving(self) -> None:
        await self.serving.start()

    async def stop(self) -> None:
        await self.serving.stop()
        await self.db.close()

"""The services of one running platform, built once from one ``Settings``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from openmaas.access import (
    AccessGate,
    AccessService,
    AccountService,
    ApplicationService,
    AuditLog,
    OidcClient,
    PlanService,
    SessionCodec,
    SnapshotStore,
)
from openmaas.access.limiter import make_limiter
from openmaas.access.sessions import session_secret
from openmaas.artifacts import ArtifactStore, open_artifact_store
from openmaas.health import Health, wait_for_database
from openmaas.metering import Billing, UsageQueries, UsageRecorder
from openmaas.registry import RegistryService
from openmaas.routing import RouteMetrics, RoutingService
from openmaas.serving import ServingService
from openmaas.settings import Settings
from openmaas.store import Database

# How long requests cut at the end of the grace period get to unwind and meter themselves.
_UNWIND_S = 2.0


@dataclass
class Platform:
    settings: Settings
    db: Database
    artifacts: ArtifactStore
    registry: RegistryService
    snapshots: SnapshotStore
    access: AccessService
    serving: ServingService
    routing: RoutingService
    accounts: AccountService
    applications: ApplicationService
    plans: PlanService
    audit: AuditLog
    oidc: OidcClient
    gate: AccessGate
    usage: UsageRecorder
    usage_queries: UsageQueries
    billing: Billing
    health: Health

    @classmethod
    def build(cls, settings: Settings) -> Platform:
        db = Database(
            settings.database_url,
            connect_timeout_s=settings.database_connect_timeout_seconds,
            statement_timeout_s=settings.database_statement_timeout_seconds,
        )
        artifacts = open_artifact_store(
            settings.artifact_url,
            data_dir=settings.data_dir,
            max_bytes=settings.max_artifact_bytes,
            cache_bytes=settings.artifact_cache_bytes,
            s3_options=settings.s3_options(),
        )
        snapshots = SnapshotStore(db, refresh_seconds=settings.access_refresh_seconds)
        sessions = SessionCodec(session_secret(settings), max_age=settings.session_max_age)
        access = AccessService(db, snapshots, sessions, admin_key=settings.admin_key)
        limiter = make_limiter(
            settings.redis_url,
            prefix=settings.redis_prefix,
            reservation_ttl=settings.reservation_ttl_seconds,
            fail_open=settings.limits_fail_open,
        )
        registry = RegistryService(db, artifacts)
        serving = ServingService(
            db,
            registry,
            cache_bytes=settings.model_cache_bytes,
            sync_interval_s=settings.sync_interval_s,
            ray_address=settings.ray_address,
            ray_app_prefix=settings.ray_app_prefix,
        )
        routing = RoutingService(
            db,
            serving.table,
            RouteMetrics(serving.metrics.registry),
            interval=settings.sync_interval_s,
        )
        secret = settings.oidc_client_secret
        return cls(
            settings=settings,
            db=db,
            artifacts=artifacts,
            registry=registry,
            serving=serving,
            routing=routing,
            snapshots=snapshots,
            access=access,
            accounts=AccountService(db, snapshots, signup=settings.signup),
            applications=ApplicationService(db, snapshots, default_plan=settings.default_plan),
            plans=PlanService(db, snapshots),
            audit=AuditLog(db),
            oidc=OidcClient(
                issuer=settings.oidc_issuer,
                client_id=settings.oidc_client_id,
                client_secret=secret.get_secret_value() if secret else None,
                scopes=settings.oidc_scopes,
            ),
            gate=AccessGate(
                db, access, snapshots, limiter, flush_seconds=settings.usage_flush_seconds
            ),
            usage=UsageRecorder(db, flush_seconds=settings.usage_flush_seconds),
            usage_queries=UsageQueries(db),
            billing=Billing(db),
            health=Health(db, serving, limiter),
        )

    async def start(self) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        migrate = self.settings.migrate_on_start
        await wait_for_database(
            self.db, wait_s=self.settings.startup_wait_seconds, need_head=not migrate
        )
        if migrate:
            await self.db.migrate()
        await self.snapshots.start()
        await self.gate.start()
        await self.usage.start()

    async def start_serving(self) -> None:
        await self.serving.start()
        await self.routing.start()
        self.health.started = True

    async def stop(self) -> None:
        self.health.stopping = True
        # The server has let in-flight requests finish (or cut them past the grace
        # period); a cut one records its usage as it unwinds, before the final flush.
        await self.serving.wait_idle(_UNWIND_S)
        await asyncio.sleep(0)
        # Metering first, while the database is still open: its final flush must land.
        await self.usage.stop()
        await self.gate.stop()
        await self.snapshots.stop()
        await self.routing.stop()
        await self.serving.stop()
        await self.artifacts.close()
        await self.db.close()

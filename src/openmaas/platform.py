"""The services of one running platform, built once from one ``Settings``."""

from __future__ import annotations

import asyncio
import os
import socket
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
from openmaas.access.login_throttle import LoginThrottle
from openmaas.access.passwords import PasswordHashing
from openmaas.access.purge import PurgeService
from openmaas.access.sessions import session_secret
from openmaas.artifacts import ArtifactStore, open_artifact_store
from openmaas.health import Health, wait_for_database
from openmaas.metering import Billing, Invoices, UsageQueries, UsageRecorder
from openmaas.metering.spill import UsageSpill
from openmaas.registry import RegistryService
from openmaas.routing import RouteMetrics, RoutingService
from openmaas.serving import ServingService
from openmaas.serving.input_limits import InputLimits
from openmaas.serving.metrics import WorkerMetricFiles
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
    purge: PurgeService
    audit: AuditLog
    oidc: OidcClient
    gate: AccessGate
    usage: UsageRecorder
    usage_queries: UsageQueries
    billing: Billing
    invoices: Invoices
    health: Health
    metric_files: WorkerMetricFiles | None

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
            input_limits=InputLimits(
                max_prompt_characters=settings.max_prompt_characters,
                max_prompt_tokens=settings.max_prompt_tokens,
                max_tensor_rows=settings.max_tensor_rows,
            ),
            ray_address=settings.ray_address,
            ray_app_prefix=settings.ray_app_prefix,
        )
        routing = RoutingService(
            db,
            serving.table,
            RouteMetrics(serving.metrics),
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
            accounts=AccountService(
                db,
                snapshots,
                signup=settings.signup,
                hashing=PasswordHashing(settings.password_hashing_concurrency),
                throttle=LoginThrottle(
                    limiter,
                    per_account=settings.login_max_failures,
                    per_address=settings.login_max_failures_per_address,
                    window_s=settings.login_failure_window_seconds,
                ),
            ),
            applications=ApplicationService(
                db,
                snapshots,
                default_plan=settings.default_plan,
                max_applications=settings.max_applications_per_developer,
                max_keys=settings.max_keys_per_developer,
            ),
            plans=PlanService(db, snapshots),
            purge=PurgeService(db, snapshots),
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
            usage=UsageRecorder(
                db,
                flush_seconds=settings.usage_flush_seconds,
                spill=UsageSpill(
                    settings.data_dir.resolve() / "usage-spill",
                    max_bytes=settings.usage_spill_bytes,
                ),
                max_buckets=settings.usage_memory_buckets,
                on_drop=serving.metrics.usage_dropped.inc,
            ),
            usage_queries=UsageQueries(db),
            billing=Billing(db, currency=settings.currency),
            invoices=Invoices(
                db,
                currency=settings.currency,
                check_seconds=settings.invoice_check_seconds,
                worker=f"{socket.gethostname()}:{os.getpid()}",
            ),
            health=Health(db, serving, limiter),
            metric_files=WorkerMetricFiles(settings.metrics_dir) if settings.metrics_dir else None,
        )

    async def start(self) -> None:
        # Private: it holds the SQLite database, the session secret and artifacts.
        self.settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        migrate = self.settings.migrate_on_start
        await wait_for_database(
            self.db, wait_s=self.settings.startup_wait_seconds, need_head=not migrate
        )
        if migrate:
            await self.db.migrate()
        await self.snapshots.start()
        await self.gate.start()
        await self.usage.start()
        if self.metric_files is not None:
            await self.metric_files.start()
        await self.invoices.start()

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
        await self.invoices.stop()
        await self.usage.stop()
        if self.metric_files is not None:
            await self.metric_files.stop()
        await self.gate.stop()
        await self.snapshots.stop()
        await self.routing.stop()
        await self.serving.stop()
        await self.artifacts.close()
        await self.db.close()

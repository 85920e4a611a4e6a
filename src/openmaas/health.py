"""Liveness and readiness of one process, for load balancers and orchestrators.

Live: the process runs and its event loop answers. Ready: it may be sent traffic, which
takes the database answering with the schema at the newest revision, the start-up work
done (access snapshot, deployments, the warm deployments' first load attempted) and no
stop under way. A rate-limit store (Redis) that does not answer leaves the process ready
but *degraded*: every replica shares that store, so taking them all out of the load
balancer would help nobody.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from openmaas.access import Limiter
from openmaas.domain.errors import OpenMaaSError
from openmaas.serving import ServingService
from openmaas.store import Database
from openmaas.store.database import DatabaseUnavailable

logger = logging.getLogger("openmaas")


@dataclass
class Readiness:
    ready: bool
    status: str  # "ready", "degraded" or "not_ready"
    checks: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "ready": self.ready, "checks": self.checks}


class Health:
    def __init__(self, db: Database, serving: ServingService, limiter: Limiter) -> None:
        self.db = db
        self.serving = serving
        self.limiter = limiter
        self.started = False
        """Set once the start-up work is done."""
        self.stopping = False
        """Set when a stop begins: readiness answers 503 from then on."""

    async def readiness(self) -> Readiness:
        checks: dict[str, str] = {}
        ready = True
        if self.stopping:
            checks["lifecycle"] = "stopping"
            ready = False
        elif not self.started:
            checks["lifecycle"] = "starting"
            ready = False
        else:
            checks["lifecycle"] = "running"
        database, redis = await asyncio.gather(self._database(), self._redis())
        checks["database"] = database
        ready = ready and database == "ok"
        loading, failed = self.serving.startup_loads()
        if loading:
            checks["models"] = f"loading {loading} deployment(s) marked to load on start"
            ready = False
        elif failed:
            # Reported, not blocking: one broken artifact must not take every replica out.
            checks["models"] = f"{failed} deployment(s) failed to load here"
        else:
            checks["models"] = "ok"
        degraded = False
        if redis is not None:
            checks["rate_limits"] = redis
            degraded = redis != "ok"
        status = "not_ready" if not ready else "degraded" if degraded else "ready"
        return Readiness(ready, status, checks)

    async def _database(self) -> str:
        try:
            if await self.db.at_head():
                return "ok"
            return "schema not at the newest revision (run `openmaas db upgrade`)"
        except OpenMaaSError as error:
            return error.message
        except Exception as error:
            # The driver's words may name the database's host: the log has them.
            logger.warning("readiness: the database check failed: %r", error)
            return "failing (the server log says why)"

    async def _redis(self) -> str | None:
        if not self.limiter.shared:
            return None
        if await self.limiter.check():
            return "ok"
        mode = "admitting uncounted" if self.limiter.fail_open else "limited keys get 503"
        return f"unreachable ({mode})"


async def wait_for_database(db: Database, *, wait_s: float, need_head: bool) -> None:
    """Wait until the database answers (and, with ``need_head``, until its schema is at
    the newest revision, which another process is migrating); raise
    ``DatabaseUnavailable`` with one clear line after ``wait_s``."""
    deadline = time.monotonic() + wait_s
    said = False
    while True:
        try:
            problem = None if (await db.at_head() or not need_head) else "schema"
        except DatabaseUnavailable as error:
            problem = error.message
        if problem is None:
            if said:
                logger.warning("the database at %s answers", db.location)
            return
        if problem == "schema":
            reason = (
                f"the schema of the database at {db.location} is not at the newest "
                "revision (run `openmaas db upgrade`)"
            )
        else:
            cause = problem.removeprefix("the database is unreachable (").removesuffix(")")
            reason = f"cannot reach the database at {db.location}: {cause}"
        if time.monotonic() >= deadline:
            waited = f" (waited {wait_s:.0f} s)" if wait_s > 0 else ""
            raise DatabaseUnavailable(reason + waited)
        if not said:
            said = True
            logger.warning("waiting up to %.0f s: %s", wait_s, reason)
        await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

"""ModelRoutes at run time: stored, synced to every worker, executed with retries and
fallback, and their canaries analysed from counts pooled in the database.

The hot path only reads the in-memory ``RouteTable`` and adds to in-memory canary
counters; a background job per worker reloads routes that changed, flushes its canary
counts and, when an interval has closed, tries to record the decision. The decision is a
compare-and-set on the route's revision, so however many workers try, one step is taken.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from openmaas.access.audit import audit
from openmaas.background import Periodic
from openmaas.domain.accounts import Principal
from openmaas.domain.deployments import DeploymentStatus
from openmaas.domain.errors import Conflict, GatewayTimeout, NotFound, OpenMaaSError
from openmaas.domain.routes import DEFAULT_NAMESPACE, RouteSpec, parse_route
from openmaas.routing import canary as analysis
from openmaas.routing.metrics import RouteMetrics
from openmaas.routing.table import Attempt, CompiledRoute, RouteTable
from openmaas.serving.endpoints import Endpoint, EndpointTable
from openmaas.store import Database, routes_repo
from openmaas.store.tables import ModelRouteRow

logger = logging.getLogger("openmaas.routing")
T = TypeVar("T")
# A model that raised answers 400 (its input may be to blame) yet is the destination's
# failure as far as routing goes: worth another destination, and a mark against a canary.
_DESTINATION_FAILURES = frozenset({"model_error"})


class RoutingService:
    def __init__(
        self, db: Database, endpoints: EndpointTable, metrics: RouteMetrics, *, interval: float
    ) -> None:
        self.db = db
        self.endpoints = endpoints
        self.metrics = metrics
        self.table = RouteTable()
        # (namespace, route, revision) -> [requests, failures] of the canary not yet flushed.
        self._counts: dict[tuple[str, str, int], list[int]] = {}
        self._sync = Periodic(
            "openmaas-routes-sync",
            interval,
            self.sync,
            logger=logger,
            failure="refreshing routes failed; retrying",
        )

    async def start(self) -> None:
        await self.sync()
        self._sync.start()

    async def stop(self) -> None:
        await self._sync.stop()
        await self._flush()

    # --- the hot path -----------------------------------------------------------------

    async def execute(
        self,
        route: CompiledRoute,
        attempts: list[Attempt],
        invoke: Callable[[Endpoint], Awaitable[T]],
    ) -> tuple[T, str]:
        """Run ``invoke`` on the destinations in turn; the first success and who gave it.

        Client errors (4xx) end the request at once: another destination would refuse the
        same input. Server errors, timeouts, a model that raised and undeployed destinations
        go on to the next.
        """
        if not attempts:
            raise NotFound(
                f"no rule of route {route.name!r} matches the request and it has no fallback",
                code="route_no_match",
            )
        failure: OpenMaaSError | None = None
        for attempt in attempts:
            for _ in range(attempt.tries):
                try:
                    endpoint = self.endpoints.reference(attempt.destination)
                except NotFound as exc:
                    failure = exc
                    break  # not deployed now: retrying it is pointless
                try:
                    if attempt.timeout_s is None:
                        result = await invoke(endpoint)
                    else:
                        async with asyncio.timeout(attempt.timeout_s):
                            result = await invoke(endpoint)
                except TimeoutError:
                    failure = GatewayTimeout(
                        f"{attempt.destination!r} did not answer within {attempt.timeout_s} s",
                        code="timeout",
                    )
                except OpenMaaSError as exc:
                    if exc.status_code < 500 and exc.code not in _DESTINATION_FAILURES:
                        self._observe(route, attempt, ok=True)
                        raise
                    failure = exc
                else:
                    self._observe(route, attempt, ok=True)
                    return result, attempt.destination
                self._observe(route, attempt, ok=False)
        assert failure is not None
        raise failure

    def _observe(self, route: CompiledRoute, attempt: Attempt, *, ok: bool) -> None:
        self.metrics.outcome(route.label, attempt.destination, ok)
        if route.canary_running and route.canary_state == analysis.PROGRESSING and attempt.canary:
            key = (route.spec.namespace, route.name, route.revision)
            counts = self._counts.setdefault(key, [0, 0])
            counts[0] += 1
            counts[1] += 0 if ok else 1

    # --- management -------------------------------------------------------------------

    async def apply(
        self, document: Any, actor: Principal, *, replace: str | None = None
    ) -> dict[str, Any]:
        """Create a route, or replace the one named ``replace`` (in the document's
        namespace); the stored resource."""
        spec = parse_route(document)
        if replace is not None and spec.name != replace:
            raise Conflict("metadata.name must match the route's name", code="route_name_mismatch")
        where = _where(spec.namespace, spec.name)
        async with self.db.session() as session:
            row = await routes_repo.get_route(
                session=session, namespace=spec.namespace, name=spec.name
            )
            if row is None and replace is not None:
                raise NotFound(f"no route {where}", code="route_not_found")
            if row is not None and replace is None:
                raise Conflict(f"route {where} exists; PUT replaces it", code="route_exists")
            if spec.name in self.endpoints.by_name or spec.name in self.endpoints.by_model:
                raise Conflict(
                    f"{spec.name!r} is already a deployed model or endpoint",
                    code="route_name_taken",
                )
            weight = spec.canary.canary if spec.canary and spec.canary.enabled else None
            now = datetime.now(UTC)
            created = analysis.condition("Accepted", "Applied", "the route was applied", now)
            row = await routes_repo.save_route(
                session=session,
                row=row,
                name=spec.name,
                namespace=spec.namespace,
                spec=spec.document,
                canary_weight=weight,
                conditions=[created],
            )
            target = _label(spec.namespace, spec.name)
            audit(session, actor, "route.replace" if replace else "route.create", target)
            await session.commit()
            self._install(row)
            return self.describe(self.find(spec.name, spec.namespace))

    async def delete(self, name: str, actor: Principal, namespace: str = DEFAULT_NAMESPACE) -> None:
        async with self.db.session() as session:
            if not await routes_repo.delete_route(session=session, namespace=namespace, name=name):
                raise NotFound(f"no route {_where(namespace, name)}", code="route_not_found")
            audit(session, actor, "route.delete", _label(namespace, name))
            await session.commit()
        self.table.remove(namespace, name)
        self.metrics.forget(_label(namespace, name))

    def find(self, name: str, namespace: str = DEFAULT_NAMESPACE) -> CompiledRoute:
        route = self.table.get(name, namespace)
        if route is None:
            raise NotFound(f"no route {_where(namespace, name)}", code="route_not_found")
        return route

    def describe(self, route: CompiledRoute) -> dict[str, Any]:
        """The resource as stored, with its live status."""
        spec = route.spec
        states = {d: self._state(d) for d in spec.destinations}
        active_rules = sum(1 for rule in spec.rules if states[rule.destination] is not None)
        phase, ready = _phase(states)
        status: dict[str, Any] = {
            "phase": phase,
            "activeRoutes": active_rules,
            # Ready first, then the history (the last ten decisions, newest last).
            "conditions": [ready, *route.conditions],
            "revision": route.revision,
            "destinations": self.metrics.counts(route.label, spec.destinations),
        }
        if spec.canary and spec.canary.enabled:
            weight = route.canary_weight or 0
            status["canary"] = {
                "state": route.canary_state,
                "trafficSplit": {"stable": 100 - weight, "canary": weight},
            }
        return {**spec.document, "status": status}

    def _state(self, destination: str) -> DeploymentStatus | None:
        """The deployment state of what a destination names; None when nothing is deployed."""
        try:
            return self.endpoints.reference(destination).deployment.status
        except NotFound:
            return None

    # --- background: sync, counts, decisions ------------------------------------------

    async def sync(self) -> None:
        await self._flush()
        # Only routes known before the read can be gone: one applied by this worker while
        # the read ran is not in ``rows`` yet, and must not be dropped.
        known = self.table.keys()
        async with self.db.session() as session:
            rows = await routes_repo.all_routes(session=session)
        seen = set()
        for row in rows:
            seen.add((row.namespace, row.name))
            current = self.table.get(row.name, row.namespace)
            if current is None or current.revision != row.revision:
                self._install(row)
        for namespace, name in known - seen:
            self.table.remove(namespace, name)
            self.metrics.forget(_label(namespace, name))
        now = datetime.now(UTC)
        for row in rows:
            await self._analyse(row, now)

    def _install(self, row: ModelRouteRow) -> None:
        try:
            spec: RouteSpec = parse_route(row.spec)
        except OpenMaaSError:
            logger.error("route %r in the database is invalid; not served", row.name)
            return
        self.table.put(
            CompiledRoute(
                spec, row.revision, row.canary_weight, row.canary_state, list(row.conditions or [])
            )
        )

    async def _flush(self) -> None:
        counts, self._counts = self._counts, {}
        if not counts:
            return
        async with self.db.session() as session:
            for (namespace, name, revision), (requests, failures) in counts.items():
                await routes_repo.add_canary_counts(
                    session=session,
                    namespace=namespace,
                    name=name,
                    revision=revision,
                    requests=requests,
                    failures=failures,
                )
            await session.commit()

    async def _analyse(self, row: ModelRouteRow, now: datetime) -> None:
        route = self.table.get(row.name, row.namespace)
        canary = route.spec.canary if route else None
        if route is None or canary is None or not canary.enabled:
            return
        if row.canary_state != analysis.PROGRESSING or row.canary_weight is None:
            return
        elapsed = (now - row.window_started_at).total_seconds()
        if elapsed < canary.interval_s or row.window_requests < canary.min_requests:
            return
        decision = analysis.decide(
            canary, row.canary_weight, row.window_requests, row.window_failures, now
        )
        conditions = [*(row.conditions or [])[-9:], decision.condition]
        async with self.db.session() as session:
            decided = await routes_repo.decide_canary(
                session=session,
                namespace=row.namespace,
                name=row.name,
                revision=row.revision,
                canary_weight=decision.weight,
                canary_state=decision.state,
                conditions=conditions,
                now=now,
            )
            await session.commit()
        if decided:
            label = _label(row.namespace, row.name)
            logger.info("route %s: %s", label, decision.condition["message"])
            row.revision += 1
            row.canary_weight, row.canary_state, row.conditions = (
                decision.weight,
                decision.state,
                conditions,
            )
            self._install(row)


def _label(namespace: str, name: str) -> str:
    return name if namespace == DEFAULT_NAMESPACE else f"{namespace}/{name}"


def _where(namespace: str, name: str) -> str:
    return f"{name!r} in namespace {namespace!r}"


def _phase(states: dict[str, DeploymentStatus | None]) -> tuple[str, dict[str, Any]]:
    """The route's phase and its ``Ready`` condition, from its destinations' states.

    Active: some destination answers. Pending: some are still loading. Failed: every
    destination is missing, undeployed or failed to load, so every request would fail.
    """
    now = datetime.now(UTC)
    names = ", ".join(states)
    if any(state is DeploymentStatus.ACTIVE for state in states.values()):
        serving = ", ".join(d for d, s in states.items() if s is DeploymentStatus.ACTIVE)
        ready = analysis.condition("Ready", "DestinationsActive", f"served by {serving}", now)
        return "Active", ready
    if any(state is DeploymentStatus.DEPLOYING for state in states.values()):
        loading = analysis.condition(
            "Ready", "DestinationsLoading", f"waiting for {names} to load", now
        )
        return "Pending", {**loading, "status": "False"}
    missing = [d for d, s in states.items() if s is None]
    if missing and len(missing) == len(states):
        reason, message = "NoDestinationDeployed", f"none of its destinations ({names}) is deployed"
    else:
        reason, message = (
            "DestinationsFailed",
            f"no destination is serving: {', '.join(missing) or 'none'} not deployed, "
            "the others failed to load",
        )
    return "Failed", {**analysis.condition("Ready", reason, message, now), "status": "False"}

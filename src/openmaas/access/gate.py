"""The inference gate: who may call which model, how often, and at what token cost.

``admit`` runs on every inference request before the model does, reading only the
in-memory snapshot (and the limit counters: process memory, or Redis when shared).
Request limits are counted at admission; token limits are checked at admission against
what earlier responses spent, and charged by ``charge_tokens`` once a response's real
token count is known, so the request that crosses a token limit completes and the next
one gets 429.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from openmaas.access.credentials import credential_from_headers, hash_key
from openmaas.access.limiter import Limiter, WindowState
from openmaas.access.service import AccessService
from openmaas.access.snapshot import SnapshotStore
from openmaas.background import Periodic
from openmaas.domain.accounts import Principal
from openmaas.domain.applications import ApplicationStatus
from openmaas.domain.errors import Forbidden, RateLimited, Unauthorized
from openmaas.domain.plans import REQUEST_WINDOWS, TOKEN_WINDOWS, Plan
from openmaas.store import Database, usage_repo, users_repo

logger = logging.getLogger("openmaas.access")


@dataclass(frozen=True, slots=True)
class Admission:
    principal: Principal  # who (admin key / user)
    application_id: int | None  # None for admins calling without an application key
    key_id: int | None
    plan: str | None
    headers: dict[str, str]  # X-RateLimit-Limit/Remaining/Reset to add to the response


@dataclass(frozen=True, slots=True)
class Attribution:
    """Whose request it was, as far as the credential tells; for usage of refused requests."""

    user_id: int | None = None
    application_id: int | None = None
    key_id: int | None = None


_month_cache: tuple[float, str] = (0.0, "")


def _month(now: datetime | None = None) -> str:
    global _month_cache
    if now is not None:
        return now.strftime("%Y-%m")
    # Formatting a date on every request shows up in profiles; the month changes rarely.
    clock = time.monotonic()
    if clock - _month_cache[0] > 1.0:
        _month_cache = (clock, datetime.now(UTC).strftime("%Y-%m"))
    return _month_cache[1]


def rate_limit_headers(state: WindowState) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(state.limit),
        "X-RateLimit-Remaining": str(max(0, state.remaining)),
        "X-RateLimit-Reset": str(state.reset_after),
    }


def _limited(state: WindowState, limit_name: str) -> RateLimited:
    headers = {"Retry-After": str(state.reset_after), **rate_limit_headers(state)}
    headers["X-RateLimit-Remaining"] = "0"
    return RateLimited(
        f"{limit_name.replace('_', ' ')} limit of {state.limit} reached; "
        f"retry in {state.reset_after} s",
        code="rate_limited",
        details={"limit": limit_name, "retry_after": state.reset_after},
        headers=headers,
    )


def _hash_or_empty(headers: Mapping[str, str]) -> str:
    key = credential_from_headers(headers)
    return hash_key(key) if key else ""


class AccessGate:
    def __init__(
        self,
        db: Database,
        access: AccessService,
        snapshots: SnapshotStore,
        limiter: Limiter,
        *,
        flush_seconds: float,
    ) -> None:
        self.db = db
        self.access = access
        self.snapshots = snapshots
        self.limiter = limiter
        self.flush_seconds = flush_seconds
        # Keys' last-used times, written to the database in batches, not per request.
        self._last_used: dict[int, datetime] = {}
        self._flusher = Periodic(
            "openmaas-key-last-used",
            flush_seconds,
            self.flush_last_used,
            logger=logger,
            failure="could not write keys' last-used times",
        )

    async def admit(self, headers: Mapping[str, str], model_name: str) -> Admission:
        identity = self.access.identify_key(credential_from_headers(headers))
        principal, key = identity.principal, identity.key
        if key is not None:
            self._last_used[key.id] = datetime.now(UTC)
        if key is None or key.application_id is None:
            if principal.is_admin:
                return Admission(principal, None, key.id if key else None, None, {})
            raise Forbidden(
                "personal keys manage the platform; call models with an application's key",
                code="application_key_required",
            )
        snapshot = self.snapshots.current
        application = snapshot.applications.get(key.application_id)
        if application is None:
            raise Unauthorized("invalid API key", code="invalid_credentials")
        if application.status is not ApplicationStatus.ACTIVE:
            raise Forbidden(
                f"the application is {application.status.value}",
                code=f"application_{application.status.value}",
            )
        plan = snapshot.plans.get(application.plan_id)
        if plan is None or not plan.allows(model_name):
            raise Forbidden(
                f"model {model_name!r} is not in the application's plan",
                code="model_not_in_plan",
                details={"model": model_name, "plan": plan.name if plan else None},
            )
        limit_headers = await self._enforce(plan, application.id)
        return Admission(principal, application.id, key.id, plan.name, limit_headers)

    def model_filter(self, headers: Mapping[str, str]) -> Callable[[str], bool]:
        """Which models the caller's plan allows, without spending any limit (for listings).

        Raises like ``admit`` for a caller who may call no model at all.
        """
        identity = self.access.identify_key(credential_from_headers(headers))
        key = identity.key
        if key is None or key.application_id is None:
            if identity.principal.is_admin:
                return lambda _name: True
            raise Forbidden(
                "personal keys manage the platform; call models with an application's key",
                code="application_key_required",
            )
        snapshot = self.snapshots.current
        application = snapshot.applications.get(key.application_id)
        if application is None:
            raise Unauthorized("invalid API key", code="invalid_credentials")
        plan = snapshot.plans.get(application.plan_id)
        if plan is None or application.status is not ApplicationStatus.ACTIVE:
            return lambda _name: False
        return plan.allows

    def attribute(self, headers: Mapping[str, str]) -> Attribution:
        """Who sent a request ``admit`` refused (403, 429): no I/O, never raises.

        Lets a 403 or 429 be metered against its application; unknown keys give Nones.
        """
        try:
            identity = self.access.identify_key(credential_from_headers(headers))
        except Exception:
            entry = self.snapshots.current.keys.get(_hash_or_empty(headers))
            if entry is None:
                return Attribution()
            return Attribution(entry.user_id, entry.application_id, entry.id)
        key = identity.key
        return Attribution(
            identity.principal.user_id,
            key.application_id if key else None,
            key.id if key else None,
        )

    async def _enforce(self, plan: Plan, application_id: int) -> dict[str, str]:
        app = str(application_id)
        # Token limits first: they only read, so a refusal here consumes no request budget.
        for name, window in TOKEN_WINDOWS:
            amount = plan.limit(name)
            if amount is not None:
                state = await self.limiter.exhausted(amount, window, "tokens", app)
                if state is not None:
                    raise _limited(state, name)
        if plan.monthly_token_quota is not None:
            state = await self.limiter.exhausted(
                plan.monthly_token_quota, "month", "quota", app, _month()
            )
            if state is not None:
                raise _limited(state, "monthly_token_quota")
        tightest: WindowState | None = None
        for name, window in REQUEST_WINDOWS:
            amount = plan.limit(name)
            if amount is None:
                continue
            admitted, state = await self.limiter.hit(amount, window, "requests", app)
            if not admitted:
                raise _limited(state, name)
            if tightest is None or state.remaining < tightest.remaining:
                tightest = state
        return rate_limit_headers(tightest) if tightest is not None else {}

    async def charge_tokens(
        self, admission: Admission, model_name: str, input_tokens: int, output_tokens: int
    ) -> None:
        """Charge a response's tokens; never raises (the response has already gone)."""
        if admission.application_id is None:
            return
        try:
            await self._charge(admission.application_id, max(0, input_tokens + output_tokens))
        except Exception:
            logger.warning("could not charge tokens of %s", model_name, exc_info=True)

    async def _charge(self, application_id: int, tokens: int, month: str | None = None) -> None:
        snapshot = self.snapshots.current
        application = snapshot.applications.get(application_id)
        plan = snapshot.plans.get(application.plan_id) if application else None
        if plan is None or tokens <= 0:
            return
        app = str(application_id)
        for name, window in TOKEN_WINDOWS:
            amount = plan.limit(name)
            if amount is not None:
                await self.limiter.charge(amount, window, tokens, "tokens", app)
        if plan.monthly_token_quota is not None:
            await self.limiter.charge(
                plan.monthly_token_quota, "month", tokens, "quota", app, month or _month()
            )

    async def _seed_monthly_quotas(self) -> None:
        """In-memory counters start at zero; begin the month's quotas at recorded usage.

        With Redis the counters outlive the process, so they are not seeded again.
        """
        month = _month()
        async with self.db.session() as session:
            rows = await usage_repo.summarize(
                session=session, group_by=["application"], month=month
            )
        for row in rows:
            if row["application"] is not None:
                tokens = int(row["input_tokens"] or 0) + int(row["output_tokens"] or 0)
                await self._charge(int(row["application"]), tokens, month)

    async def flush_last_used(self) -> None:
        pending, self._last_used = self._last_used, {}
        if not pending:
            return
        try:
            async with self.db.session() as session:
                await users_repo.touch_keys(session=session, last_used=pending)
                await session.commit()
        except Exception:
            # Keep the times for the next try, unless a newer use replaced them; the
            # periodic job logs an outage once, when it starts.
            for key_id, at in pending.items():
                self._last_used.setdefault(key_id, at)
            raise

    async def start(self) -> None:
        if not self.limiter.shared:
            await self._seed_monthly_quotas()
        self._flusher.start()

    async def stop(self) -> None:
        await self._flusher.stop()
        try:
            await self.flush_last_used()
        except Exception as exc:
            logger.error("keys' last-used times could not be written: %s", exc)
        await self.limiter.close()

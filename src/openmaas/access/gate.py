"""The inference gate: who may call which model, how often, and at what token cost.

``admit`` runs on every inference request before anything else and reads only the
in-memory snapshot: the key, the application, the plan and the terms that apply to the
model (``Plan.terms_for``). ``reserve`` then takes what the request needs from every
limit in force in one atomic step of the limiter (process memory, or Redis when shared):
one request, and for a language model its prompt's tokens and an output allowance that
the caller caps the model's output to. ``settle`` counts what was really used once the
answer is complete and returns the rest of the reservation.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from openmaas.access.credentials import credential_from_headers, hash_key
from openmaas.access.limiter import SPANS, Counter, Demand, Hold, Limiter, WindowState
from openmaas.access.service import AccessService, Identity
from openmaas.access.snapshot import SnapshotStore
from openmaas.background import Periodic
from openmaas.domain.accounts import Principal
from openmaas.domain.applications import ApplicationStatus
from openmaas.domain.errors import Forbidden, RateLimited, Unauthorized
from openmaas.domain.plans import Limit, Metric, PlanTerms
from openmaas.store import Database, usage_repo, users_repo

logger = logging.getLogger("openmaas.access")


@dataclass(frozen=True, slots=True)
class Admission:
    principal: Principal  # who (admin key / user)
    application_id: int | None  # None for admins calling without an application key
    key_id: int | None
    plan: str | None
    terms: PlanTerms | None = None  # what applies to the model; None: no plan (admins)


@dataclass(slots=True)
class Reservation:
    """What ``reserve`` took: the output allowance and the state of every limit counted."""

    allowance: int  # output tokens the request may generate, all its choices together
    limits: tuple[Limit, ...] = ()
    states: tuple[WindowState, ...] = ()
    hold: Hold | None = None
    renewal: asyncio.TimerHandle | None = None
    settled: bool = False
    caps_output: bool = field(default=False)
    """Whether an output or total token limit applies: the model must be capped."""

    def headers(self) -> dict[str, str]:
        """X-RateLimit-* of the request limit with the least left (none without one)."""
        tightest = self._tightest(tokens=False)
        return rate_limit_headers(tightest[1]) if tightest else {}

    def openai_headers(self, input_tokens: int = -1, output_tokens: int = 0) -> dict[str, str]:
        """OpenAI's ``x-ratelimit-*`` headers; with the tokens used, after settling."""
        headers: dict[str, str] = {}
        requests = self._tightest(tokens=False)
        if requests:
            state = requests[1]
            headers["x-ratelimit-limit-requests"] = str(state.limit)
            headers["x-ratelimit-remaining-requests"] = str(max(0, state.remaining))
            headers["x-ratelimit-reset-requests"] = f"{state.reset_after}s"
        tokens = self._tightest(tokens=True, input_tokens=input_tokens, output=output_tokens)
        if tokens:
            remaining, state = tokens
            headers["x-ratelimit-limit-tokens"] = str(state.limit)
            headers["x-ratelimit-remaining-tokens"] = str(max(0, remaining))
            headers["x-ratelimit-reset-tokens"] = f"{state.reset_after}s"
        return headers

    def _tightest(
        self, *, tokens: bool, input_tokens: int = -1, output: int = 0
    ) -> tuple[int, WindowState] | None:
        best: tuple[int, WindowState] | None = None
        # The hold lists the token limits' amounts in the order of ``limits``.
        held = iter(self.hold.amounts if self.hold else ())
        for limit, state in zip(self.limits, self.states, strict=True):
            if limit.counts_tokens != tokens:
                continue
            remaining = state.remaining
            if tokens:
                amount = next(held, 0)
                if input_tokens >= 0:
                    remaining += amount - _spent(limit.metric, input_tokens, output)
            if best is None or remaining < best[0]:
                best = (remaining, state)
        return best


def _spent(metric: Metric, input_tokens: int, output_tokens: int) -> int:
    if metric is Metric.INPUT_TOKENS:
        return input_tokens
    if metric is Metric.OUTPUT_TOKENS:
        return output_tokens
    return input_tokens + output_tokens


@dataclass(frozen=True, slots=True)
class Attribution:
    """Whose request it was, as far as the credential tells; for usage of refused requests."""

    user_id: int | None = None
    application_id: int | None = None
    key_id: int | None = None


_month_cache: tuple[float, str, float, float] = (0.0, "", 0.0, 0.0)


def _month() -> tuple[str, float, float]:
    """This UTC month: "YYYY-MM", its start (POSIX) and its length in seconds."""
    global _month_cache
    # Working the month out on every request shows up in profiles; it changes rarely.
    clock = time.monotonic()
    if clock - _month_cache[0] > 1.0:
        now = datetime.now(UTC)
        start = datetime(now.year, now.month, 1, tzinfo=UTC).timestamp()
        days = calendar.monthrange(now.year, now.month)[1]
        _month_cache = (clock, now.strftime("%Y-%m"), start, days * 86400.0)
    return _month_cache[1], _month_cache[2], _month_cache[3]


def _counter(application_id: int, limit: Limit) -> Counter:
    key = f"{application_id}:{limit.scope}:{limit.name}:{limit.amount}"
    if limit.window == "month":
        month, start, length = _month()
        return Counter(f"{key}:{month}", limit.metric, limit.amount, length, start)
    return Counter(key, limit.metric, limit.amount, SPANS[limit.window])


def rate_limit_headers(state: WindowState) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(state.limit),
        "X-RateLimit-Remaining": str(max(0, state.remaining)),
        "X-RateLimit-Reset": str(state.reset_after),
    }


def _window_seconds(limit: Limit) -> int:
    return int(_month()[2] if limit.window == "month" else SPANS[limit.window])


def _limited(limit: Limit, state: WindowState, demand: Demand | None) -> RateLimited:
    """The 429 for a limit that cannot give what the request needs."""
    retry = state.reset_after
    remaining = max(0, state.remaining)
    if limit.metric is Metric.REQUESTS:
        message = f"{limit.name} limit of {limit.amount} reached"
    else:
        prompt = demand.input_tokens if demand else 0
        least = demand.least_output if demand and demand.output_tokens > 0 else 0
        needed = {
            Metric.INPUT_TOKENS: prompt,
            Metric.OUTPUT_TOKENS: least,
            Metric.TOTAL_TOKENS: prompt + least,
        }[limit.metric]
        message = (
            f"{limit.name} limit of {limit.amount} reached: {remaining} tokens left, "
            f"the request needs at least {needed}"
        )
    unit = "" if limit.metric is Metric.REQUESTS else ';openmaas-unit="tokens"'
    headers = {
        "Retry-After": str(retry),
        **rate_limit_headers(state),
        "RateLimit-Policy": (f'"{limit.name}";q={limit.amount};w={_window_seconds(limit)}{unit}'),
        "RateLimit": f'"{limit.name}";r={remaining};t={retry}',
    }
    return RateLimited(
        f"{message}; retry in {retry} s",
        code="rate_limited",
        details={"limit": limit.name, "remaining": remaining, "retry_after": retry},
        headers=headers,
    )


_NO_TOKENS = Demand()


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
        self._tasks: set[asyncio.Task[None]] = set()
        self._flusher = Periodic(
            "openmaas-key-last-used",
            flush_seconds,
            self.flush_last_used,
            logger=logger,
            failure="could not write keys' last-used times",
        )

    async def admit(
        self, headers: Mapping[str, str], model_name: str, identity: Identity | None = None
    ) -> Admission:
        """Who may call ``model_name`` and on which terms; ``identity``: the caller's key
        as the entry of the request already identified it (not looked up twice)."""
        if identity is None:
            identity = self.access.identify_key(credential_from_headers(headers))
        principal, key = identity.principal, identity.key
        if key is not None:
            self._last_used[key.id] = datetime.now(UTC)
        if key is None or key.application_id is None:
            if principal.is_admin:
                return Admission(principal, None, key.id if key else None, None)
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
        return Admission(principal, application.id, key.id, plan.name, plan.terms_for(model_name))

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

    async def reserve(self, admission: Admission, demand: Demand | None = None) -> Reservation:
        """Take one request, and with a ``demand`` its tokens, from every limit in force.

        Without a demand only the request limits count (a model that reads no tokens).
        Raises ``RateLimited`` (nothing taken from any limit) when one cannot give what
        the request needs: a request, the prompt, or the prompt and ``least_output``.
        """
        wanted = demand.output_tokens if demand is not None else 0
        terms = admission.terms
        if terms is None or admission.application_id is None:
            return Reservation(wanted)
        limits = terms.limits if demand is not None else terms.request_limits
        if not limits:
            return Reservation(wanted)
        app = admission.application_id
        counters = [_counter(app, limit) for limit in limits]
        outcome = await self.limiter.acquire(counters, demand or _NO_TOKENS)
        if not outcome.admitted:
            assert outcome.failed is not None
            raise _limited(limits[outcome.failed], outcome.states[0], demand)
        reservation = Reservation(
            outcome.allowance,
            limits,
            outcome.states,
            outcome.hold,
            caps_output=demand is not None and terms.caps_output,
        )
        if outcome.hold is not None:
            self._schedule_renewal(reservation)
        return reservation

    def _schedule_renewal(self, reservation: Reservation) -> None:
        # A request still running at half its reservation's life renews it; one that
        # is never settled (its worker died) lets it expire.
        loop = asyncio.get_running_loop()
        reservation.renewal = loop.call_later(
            self.limiter.reservation_ttl / 2, self._renew, reservation
        )

    def _renew(self, reservation: Reservation) -> None:
        if reservation.settled or reservation.hold is None:
            return
        task = asyncio.create_task(self._renew_hold(reservation))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _renew_hold(self, reservation: Reservation) -> None:
        assert reservation.hold is not None
        try:
            await self.limiter.renew(reservation.hold)
        except Exception:
            logger.warning("could not renew a token reservation", exc_info=True)
        if not reservation.settled:
            self._schedule_renewal(reservation)

    async def settle(self, reservation: Reservation, input_tokens: int, output_tokens: int) -> None:
        """Count what the request used and return the rest; never raises (the answer is gone).

        With Redis the settlement is sent in the background: the answer does not wait
        for it, and until it lands the reservation keeps holding (the safe side).
        """
        if reservation.settled:
            return
        reservation.settled = True
        if reservation.renewal is not None:
            reservation.renewal.cancel()
        hold = reservation.hold
        if hold is None:
            return
        used = (max(0, input_tokens), max(0, output_tokens))
        if not self.limiter.shared:
            await self._settle(hold, *used)
            return
        task = asyncio.create_task(self._settle(hold, *used))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle(self, hold: Hold, input_tokens: int, output_tokens: int) -> None:
        try:
            await self.limiter.settle(hold, input_tokens, output_tokens)
        except Exception:
            logger.warning("could not settle a token reservation", exc_info=True)

    async def _seed_monthly_quotas(self) -> None:
        """In-memory counters start at zero; begin the month's quotas at recorded usage.

        With Redis the counters outlive the process, so they are not seeded again.
        """
        month = _month()[0]
        async with self.db.session() as session:
            rows = await usage_repo.summarize(
                session=session, group_by=["application", "model"], month=month
            )
        snapshot = self.snapshots.current
        spent: dict[Counter, int] = {}
        for row in rows:
            application = snapshot.applications.get(int(row["application"] or 0))
            plan = snapshot.plans.get(application.plan_id) if application else None
            if application is None or plan is None:
                continue
            tokens = int(row["input_tokens"] or 0) + int(row["output_tokens"] or 0)
            for limit in plan.terms_for(str(row["model"])).token_limits:
                if limit.window == "month":
                    counter = _counter(application.id, limit)
                    spent[counter] = spent.get(counter, 0) + tokens
        for counter, tokens in spent.items():
            await self.limiter.add(counter, tokens)

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
        if self._tasks:  # settlements on their way to Redis land before it closes
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.limiter.close()

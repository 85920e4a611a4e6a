"""Counting against limits: all windows of a request in one atomic step, with reservations.

A request names the counters of every limit in force (``Counter``) and what it needs
(``Demand``): one request, its prompt's tokens, the output tokens it would like and the
fewest it can do with. ``acquire`` checks every counter and then either takes from all
of them or from none: a request counts one in each request window; token windows hold
a reservation of the prompt plus an output allowance, the output the caller wanted
lowered to what every window still has. ``settle`` turns a reservation into what was
really used and returns the rest; ``renew`` keeps it alive while the request runs.

Each counter's window is fixed: it opens with its first use and lasts its length (a
calendar month for monthly quotas). A counter keeps the amount used and the amount held
by reservations; a reservation expires ``reservation_ttl`` after it was made or last
renewed, so a worker or replica that dies mid-request stops holding budget (Kuadrant
Limitador's Reserve/Commit, RFC 0021). A settlement that arrives after its window closed
changes nothing: the window it was held in is gone.

``MemoryLimiter`` does this in one process (each step runs without awaiting, so it is
atomic on the event loop); ``RedisLimiter`` (``redis_limiter.py``) in one Lua script per
step, one round trip, shared by every worker and replica.

When the shared store fails, the gate refuses (``limits_unavailable``, 503) rather than
letting unlimited traffic through, unless the operator chose to fail open
(``limits_fail_open``): then requests are admitted uncounted until the store answers
again. Either way an outage is logged once when it starts and once when it ends, and
``degraded`` says so (readiness reports it).
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from openmaas.domain.errors import ServiceUnavailable
from openmaas.domain.plans import Metric

logger = logging.getLogger("openmaas.access")

SPANS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
# Past this many counters, windows that have closed are swept from memory.
_SWEEP_EVERY = 60.0


@dataclass(frozen=True, slots=True)
class Counter:
    """One limit's counter for one application (``key`` is unique to the pair)."""

    key: str
    metric: Metric
    limit: int
    span: float  # seconds a window lasts
    start: float | None = None  # a fixed start (calendar month); None: the first use


@dataclass(frozen=True, slots=True)
class Demand:
    input_tokens: int = 0
    output_tokens: int = 0  # wanted
    least_output: int = 0  # fewer than this and the request is refused


REQUEST = Demand()


@dataclass(frozen=True, slots=True)
class WindowState:
    limit: int
    remaining: int
    reset_at: float  # POSIX time the window's counter starts again

    @property
    def reset_after(self) -> int:
        """Whole seconds until the reset, at least 1 (what Retry-After wants)."""
        return max(1, math.ceil(self.reset_at - time.time()))


@dataclass(frozen=True, slots=True)
class Hold:
    """A reservation: what it took from which token counters, in which of their windows.

    ``starts`` identify each counter's window in the limiter's own terms.
    """

    id: str
    counters: tuple[Counter, ...]
    amounts: tuple[int, ...]
    starts: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Outcome:
    """``admitted``: the output allowance, every counter's state after it, the hold.

    Refused: ``failed`` is the index of the first counter that could not give what the
    request needs, and ``states`` holds that counter's state only.
    """

    admitted: bool
    allowance: int
    states: tuple[WindowState, ...]
    hold: Hold | None = None
    failed: int | None = None


class Limiter(ABC):
    shared: bool = False

    def __init__(self, *, reservation_ttl: float, fail_open: bool = False) -> None:
        self.reservation_ttl = reservation_ttl
        self.fail_open = fail_open
        self.degraded = False
        """The shared store failed on its last use and has not answered since."""
        self._node = os.urandom(4).hex()
        self._ids = itertools.count()

    def _failed(self, exc: Exception) -> None:
        """Where a store error becomes ``limits_unavailable``, or, failing open, nothing."""
        if not self.degraded:
            self.degraded = True
            action = (
                "admitting requests without counting them (limits_fail_open)"
                if self.fail_open
                else "refusing keys with limits (503) until it answers"
            )
            logger.warning("the rate limit store is unreachable (%r): %s", exc, action)
        if not self.fail_open:
            raise unavailable() from exc

    def _recovered(self) -> None:
        self.degraded = False
        logger.warning("the rate limit store answers again")

    async def check(self) -> bool:
        """Whether the shared store answers now (always True in memory)."""
        return True

    def _new_id(self) -> str:
        return f"{self._node}{next(self._ids)}"

    @abstractmethod
    async def acquire(self, counters: Sequence[Counter], demand: Demand) -> Outcome:
        """Take what ``demand`` needs from every counter, or from none."""

    @abstractmethod
    async def settle(self, hold: Hold, input_tokens: int, output_tokens: int) -> None:
        """Release the hold and count what was really used, in the windows it was held in."""

    @abstractmethod
    async def renew(self, hold: Hold) -> None:
        """Extend the hold's expiry by the reservation time, from now."""

    @abstractmethod
    async def add(self, counter: Counter, amount: int) -> None:
        """Count ``amount`` as used (monthly usage recorded before a restart)."""

    async def close(self) -> None:
        return None


def needs(metric: Metric, demand: Demand, allowance: int) -> int:
    """What a request takes from a counter of ``metric`` with this output allowance."""
    if metric is Metric.REQUESTS:
        return 1
    if metric is Metric.INPUT_TOKENS:
        return demand.input_tokens
    if metric is Metric.OUTPUT_TOKENS:
        return allowance
    return demand.input_tokens + allowance


def used(metric: Metric, input_tokens: int, output_tokens: int) -> int:
    if metric is Metric.INPUT_TOKENS:
        return input_tokens
    if metric is Metric.OUTPUT_TOKENS:
        return output_tokens
    return input_tokens + output_tokens


class _Window:
    __slots__ = ("end", "held", "holds", "start", "used")

    def __init__(self, start: float, end: float) -> None:
        self.start = start
        self.end = end
        self.used = 0
        self.held = 0
        self.holds: dict[str, tuple[int, float]] = {}  # reservation id -> (amount, expiry)

    def purge(self, now: float) -> None:
        if not self.holds:
            return
        for hold_id, (amount, expiry) in list(self.holds.items()):
            if expiry <= now:
                del self.holds[hold_id]
                self.held -= amount


class MemoryLimiter(Limiter):
    """The limiter of one process: exact for that process alone."""

    def __init__(self, *, reservation_ttl: float) -> None:
        super().__init__(reservation_ttl=reservation_ttl)
        self._windows: dict[str, _Window] = {}
        self._next_sweep = time.time() + _SWEEP_EVERY

    def _window(self, counter: Counter, now: float) -> _Window | None:
        window = self._windows.get(counter.key)
        if window is not None and window.end <= now:
            del self._windows[counter.key]
            return None
        return window

    async def acquire(self, counters: Sequence[Counter], demand: Demand) -> Outcome:
        now = time.time()
        if now >= self._next_sweep:
            self._sweep(now)
        allowance = demand.output_tokens
        least = demand.least_output if demand.output_tokens > 0 else 0
        windows: list[_Window | None] = []
        frees: list[int] = []
        for index, counter in enumerate(counters):
            window = self._window(counter, now)
            if window is not None:
                window.purge(now)
            free = counter.limit - (window.used + window.held if window else 0)
            metric = counter.metric
            if metric is Metric.REQUESTS:
                ok = free >= 1
            elif metric is Metric.INPUT_TOKENS:
                ok = free >= demand.input_tokens
            elif metric is Metric.OUTPUT_TOKENS:
                ok = free >= least
                allowance = min(allowance, free)
            else:
                ok = free >= demand.input_tokens + least
                allowance = min(allowance, free - demand.input_tokens)
            if not ok:
                reset = window.end if window else (counter.start or now) + counter.span
                state = WindowState(counter.limit, max(0, free), reset)
                return Outcome(False, 0, (state,), failed=index)
            windows.append(window)
            frees.append(free)
        allowance = max(0, allowance)
        states: list[WindowState] = []
        held: list[int] = []
        hold_id = self._new_id()
        expiry = now + self.reservation_ttl
        for counter, window, free in zip(counters, windows, frees, strict=True):
            if window is None:
                start = counter.start if counter.start is not None else now
                window = self._windows[counter.key] = _Window(start, start + counter.span)
            amount = needs(counter.metric, demand, allowance)
            if counter.metric is Metric.REQUESTS:
                window.used += 1
            else:
                held.append(len(states))
                if amount > 0:
                    window.held += amount
                    window.holds[hold_id] = (amount, expiry)
            states.append(WindowState(counter.limit, free - amount, window.end))
        hold = None
        if held:
            token_counters = tuple(counters[i] for i in held)
            hold = Hold(
                hold_id,
                token_counters,
                tuple(needs(c.metric, demand, allowance) for c in token_counters),
                tuple(self._windows[c.key].start for c in token_counters),
            )
        return Outcome(True, allowance, tuple(states), hold)

    async def settle(self, hold: Hold, input_tokens: int, output_tokens: int) -> None:
        now = time.time()
        for counter, start in zip(hold.counters, hold.starts, strict=True):
            window = self._window(counter, now)
            if window is None or window.start != start:
                continue  # the window it was held in has closed
            taken = window.holds.pop(hold.id, None)
            if taken is not None:
                window.held -= taken[0]
            window.used += used(counter.metric, input_tokens, output_tokens)

    async def renew(self, hold: Hold) -> None:
        now = time.time()
        expiry = now + self.reservation_ttl
        for counter, start in zip(hold.counters, hold.starts, strict=True):
            window = self._window(counter, now)
            if window is not None and window.start == start and hold.id in window.holds:
                window.holds[hold.id] = (window.holds[hold.id][0], expiry)

    async def add(self, counter: Counter, amount: int) -> None:
        now = time.time()
        window = self._window(counter, now)
        if window is None:
            start = counter.start if counter.start is not None else now
            window = self._windows[counter.key] = _Window(start, start + counter.span)
        window.used += amount

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + _SWEEP_EVERY
        for key in [key for key, window in self._windows.items() if window.end <= now]:
            del self._windows[key]


def unavailable() -> ServiceUnavailable:
    return ServiceUnavailable("the rate limit store is unreachable", code="limits_unavailable")


def make_limiter(
    redis_url: str | None, *, prefix: str, reservation_ttl: float, fail_open: bool = False
) -> Limiter:
    if redis_url:
        from openmaas.access.redis_limiter import RedisLimiter

        return RedisLimiter(
            redis_url, prefix=prefix, reservation_ttl=reservation_ttl, fail_open=fail_open
        )
    return MemoryLimiter(reservation_ttl=reservation_ttl)

"""Counting against limits with the ``limits`` library: in memory, or in Redis when shared.

Fixed windows, because their counters are single atomic increments (INCRBY in Redis):
with N allowed, exactly N concurrent hits succeed however many workers share the store.
Every failure of the store surfaces as ``ServiceUnavailable``: when the counters cannot be
read the gate refuses rather than letting unlimited traffic through, unless the operator
chose to fail open (``limits_fail_open``): then requests are admitted uncounted until the
store answers again. Either way an outage is logged once when it starts and once when it
ends, and ``degraded`` says so (readiness reports it).

A hit is one increment: the count it returns gives what remains, and a window's reset
time, read when the window starts, is remembered until it passes. With Redis that is one
round trip per window instead of three on every request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass

from limits import (
    RateLimitItem,
    RateLimitItemPerDay,
    RateLimitItemPerHour,
    RateLimitItemPerMinute,
    RateLimitItemPerSecond,
)
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter

from openmaas.domain.errors import ServiceUnavailable

logger = logging.getLogger("openmaas.access")

_REDIS_CONNECTIONS = 64
# Redis answers in well under a millisecond; one that takes seconds is down or hanging.
_REDIS_TIMEOUT_S = 2.0
# Remembered reset times are forgotten wholesale past this many (applications x windows).
_MAX_RESETS = 100_000
_WINDOWS: dict[str, tuple[type[RateLimitItem], int]] = {
    "second": (RateLimitItemPerSecond, 1),
    "minute": (RateLimitItemPerMinute, 1),
    "hour": (RateLimitItemPerHour, 1),
    "day": (RateLimitItemPerDay, 1),
    # Monthly quotas are keyed by the calendar month, so the window only has to outlive it.
    "month": (RateLimitItemPerDay, 32),
}


@dataclass(frozen=True, slots=True)
class WindowState:
    limit: int
    remaining: int
    reset_at: float  # POSIX time the window's counter starts again

    @property
    def reset_after(self) -> int:
        """Whole seconds until the reset, at least 1 (what Retry-After wants)."""
        return max(1, math.ceil(self.reset_at - time.time()))


class Limiter:
    def __init__(self, redis_url: str | None, *, prefix: str, fail_open: bool = False) -> None:
        self.shared = bool(redis_url)
        self.fail_open = fail_open
        self.degraded = False
        """The shared store failed on its last use and has not answered since."""
        storage: Storage
        if redis_url:
            from redis.asyncio import BlockingConnectionPool

            # A bounded pool that makes callers wait for a connection: the default pool
            # refuses outright once full, which under a burst would turn into 503s.
            pool = BlockingConnectionPool.from_url(
                redis_url,
                max_connections=_REDIS_CONNECTIONS,
                timeout=10,
                socket_connect_timeout=_REDIS_TIMEOUT_S,
                socket_timeout=_REDIS_TIMEOUT_S,
            )
            storage = RedisStorage(
                f"async+{redis_url}",
                implementation="redispy",
                key_prefix=f"{prefix}:limits",
                wrap_exceptions=True,
                connection_pool=pool,  # type: ignore[arg-type]
            )
        else:
            storage = MemoryStorage()
        self.storage = storage
        self._strategy = FixedWindowRateLimiter(storage)
        self._items: dict[tuple[int, str], RateLimitItem] = {}
        self._resets: dict[str, float] = {}  # counter key -> POSIX time its window ends

    def _item(self, amount: int, window: str) -> RateLimitItem:
        item = self._items.get((amount, window))
        if item is None:
            kind, multiples = _WINDOWS[window]
            item = self._items[(amount, window)] = kind(amount, multiples, namespace="om")
        return item

    async def hit(self, amount: int, window: str, *ids: str) -> tuple[bool, WindowState]:
        """Count one request; False when it went past the limit."""
        item = self._item(amount, window)
        key = item.key_for(*ids)
        try:
            # What FixedWindowRateLimiter.hit does, keeping the count it throws away.
            count = await self.storage.incr(key, item.get_expiry(), amount=1)
            reset_at = self._resets.get(key)
            # A count of 1 opened a new window. A remembered reset time still ahead
            # belongs to this very counter: a new one only starts once it has passed
            # (Redis' TTL is whole seconds, rounded down, so it errs early, never late).
            if count <= 1 or reset_at is None or reset_at <= time.time():
                reset_at = await self.storage.get_expiry(key)
                if len(self._resets) >= _MAX_RESETS:
                    self._resets.clear()
                self._resets[key] = reset_at
        except Exception as exc:
            self._failed(exc)
            return True, WindowState(amount, amount, time.time() + 1)
        if self.degraded:
            self._recovered()
        return count <= amount, WindowState(amount, max(0, amount - count), reset_at)

    async def exhausted(self, amount: int, window: str, *ids: str) -> WindowState | None:
        """The window's state when nothing is left in it, else None (counts nothing)."""
        item = self._item(amount, window)
        try:
            if await self._strategy.test(item, *ids):
                return None
            stats = await self._strategy.get_window_stats(item, *ids)
        except Exception as exc:
            self._failed(exc)
            return None
        return WindowState(amount, 0, stats.reset_time)

    async def charge(self, amount: int, window: str, cost: int, *ids: str) -> None:
        """Count ``cost`` units whether or not they fit: tokens already spent are spent."""
        if cost <= 0:
            return
        try:
            await self._strategy.hit(self._item(amount, window), *ids, cost=cost)
        except Exception as exc:
            self._failed(exc)

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
            raise _unavailable() from exc

    def _recovered(self) -> None:
        self.degraded = False
        logger.warning("the rate limit store answers again")

    async def check(self) -> bool:
        """Whether the shared store answers now (always True in memory)."""
        if not self.shared:
            return True
        try:
            async with asyncio.timeout(_REDIS_TIMEOUT_S):
                answered = bool(await self.storage.check())
        except Exception:
            logger.debug("rate limit store health check failed", exc_info=True)
            answered = False
        if answered and self.degraded:
            self._recovered()
        elif not answered and not self.degraded:
            self.degraded = True
            logger.warning("the rate limit store is unreachable (health check)")
        return answered

    async def close(self) -> None:
        timer = getattr(self.storage, "timer", None)
        if timer is not None and not timer.done():
            timer.cancel()
        client = getattr(getattr(self.storage, "bridge", None), "storage", None)
        if client is not None:
            await client.aclose(close_connection_pool=True)


def _unavailable() -> ServiceUnavailable:
    return ServiceUnavailable("the rate limit store is unreachable", code="limits_unavailable")

"""The limiters themselves, in memory and in Redis: the same semantics, checked alike.

What HTTP cannot show on demand: a reservation whose worker died expires, a settlement
that comes back late, all windows or none under concurrency.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from openmaas.access.limiter import Counter, Demand, Limiter, MemoryLimiter
from openmaas.domain.plans import Metric
from tests.servers import drop_redis_prefix, redis_or_skip, unique_redis_prefix


def _memory(ttl: float) -> Limiter:
    return MemoryLimiter(reservation_ttl=ttl)


def _redis(ttl: float) -> Limiter:
    from openmaas.access.redis_limiter import RedisLimiter

    return RedisLimiter(redis_or_skip(), prefix=PREFIX, reservation_ttl=ttl)


PREFIX = unique_redis_prefix()


@pytest.fixture(scope="module", autouse=True)
def _clean_redis() -> Iterator[None]:
    yield
    with contextlib.suppress(Exception):  # no Redis here: nothing was written
        drop_redis_prefix(PREFIX)


@pytest.fixture(params=["memory", "redis"])
def make_limiter(request: pytest.FixtureRequest) -> Callable[[float], Limiter]:
    return _memory if request.param == "memory" else _redis


def _counter(metric: Metric, limit: int, span: float = 60.0) -> Counter:
    return Counter(f"test:{uuid.uuid4().hex}", metric, limit, span)


def test_all_windows_or_none(make_limiter: Callable[[float], Limiter]) -> None:
    async def run() -> None:
        limiter = make_limiter(30)
        try:
            minute = _counter(Metric.REQUESTS, 5)
            day = _counter(Metric.REQUESTS, 2, 86400)
            outcomes = [await limiter.acquire([minute, day], Demand()) for _ in range(4)]
            assert [o.admitted for o in outcomes] == [True, True, False, False]
            assert outcomes[2].failed == 1  # the day refused; the minute kept its 3
            assert (await limiter.acquire([minute], Demand())).states[0].remaining == 2
        finally:
            await limiter.close()

    asyncio.run(run())


def test_concurrent_reservations_never_pass_the_limit(
    make_limiter: Callable[[float], Limiter],
) -> None:
    async def run() -> None:
        limiter = make_limiter(30)
        try:
            total = _counter(Metric.TOTAL_TOKENS, 200)
            demand = Demand(input_tokens=10, output_tokens=30, least_output=1)
            outcomes = await asyncio.gather(*(limiter.acquire([total], demand) for _ in range(40)))
            admitted = [o for o in outcomes if o.admitted]
            # 40 + 40 + 40 + 40 + 40 = 200: five whole reservations, then nothing.
            assert [o.allowance for o in admitted] == [30] * 5
            held = sum(10 + o.allowance for o in admitted)
            assert held == 200
            refused = next(o for o in outcomes if not o.admitted)
            assert refused.states[0].remaining == 0
            # Settling returns what was not used: 5 x 15 used, 125 free again.
            for outcome in admitted:
                assert outcome.hold is not None
                await limiter.settle(outcome.hold, 10, 5)
            last = await limiter.acquire([total], Demand(10, 1000, 1))
            assert last.allowance == 200 - 75 - 10
        finally:
            await limiter.close()

    asyncio.run(run())


def test_the_allowance_is_what_every_window_still_has(
    make_limiter: Callable[[float], Limiter],
) -> None:
    async def run() -> None:
        limiter = make_limiter(30)
        try:
            inputs = _counter(Metric.INPUT_TOKENS, 100)
            outputs = _counter(Metric.OUTPUT_TOKENS, 12)
            total = _counter(Metric.TOTAL_TOKENS, 60)
            counters = [inputs, outputs, total]
            first = await limiter.acquire(counters, Demand(40, 30, 1))
            assert first.admitted and first.allowance == 12  # the output window's all
            assert [s.remaining for s in first.states] == [60, 0, 8]
            second = await limiter.acquire(counters, Demand(5, 30, 1))
            assert not second.admitted and second.failed == 1  # no output left
            third = await limiter.acquire(counters, Demand(61, 1, 1))
            assert not third.admitted and third.failed == 0  # 60 input tokens left
            embedding = await limiter.acquire([inputs, outputs], Demand(10))
            assert embedding.admitted and embedding.allowance == 0
        finally:
            await limiter.close()

    asyncio.run(run())


def test_a_reservation_nobody_settles_expires_and_a_renewed_one_does_not(
    make_limiter: Callable[[float], Limiter],
) -> None:
    async def run() -> None:
        limiter = make_limiter(0.5)
        try:
            tokens = _counter(Metric.TOTAL_TOKENS, 100)
            kept = _counter(Metric.TOTAL_TOKENS, 100)
            # A worker that died mid-request: it reserved, and never settles.
            dead = await limiter.acquire([tokens], Demand(10, 90, 1))
            alive = await limiter.acquire([kept], Demand(10, 90, 1))
            assert dead.admitted and alive.admitted and alive.hold is not None
            assert not (await limiter.acquire([tokens], Demand(10, 1, 1))).admitted
            deadline = time.monotonic() + 10
            while True:
                await asyncio.sleep(0.2)
                await limiter.renew(alive.hold)
                again = await limiter.acquire([tokens], Demand(10, 100, 1))
                if again.admitted:
                    break
                assert time.monotonic() < deadline, "the dead reservation never expired"
            assert again.allowance == 90  # all of it came back
            assert not (await limiter.acquire([kept], Demand(10, 1, 1))).admitted
            # Settling late, after the hold expired, still counts what was used.
            await limiter.settle(dead.hold, 10, 20)  # type: ignore[arg-type]
            assert not (await limiter.acquire([tokens], Demand(0, 1000, 1))).admitted
        finally:
            await limiter.close()

    asyncio.run(run())


def test_a_settlement_after_the_window_closed_changes_nothing(
    make_limiter: Callable[[float], Limiter],
) -> None:
    async def run() -> None:
        limiter = make_limiter(30)
        try:
            second = _counter(Metric.OUTPUT_TOKENS, 10, span=1.0)
            outcome = await limiter.acquire([second], Demand(0, 10, 1))
            assert outcome.hold is not None
            deadline = time.monotonic() + 5
            while not (fresh := await limiter.acquire([second], Demand(0, 1, 1))).admitted:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)
            await limiter.settle(outcome.hold, 0, 10)  # belongs to the closed window
            assert fresh.hold is not None
            await limiter.settle(fresh.hold, 0, 0)
            assert (await limiter.acquire([second], Demand(0, 10, 1))).allowance == 10
        finally:
            await limiter.close()

    asyncio.run(run())

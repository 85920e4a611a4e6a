"""Failed logins counted per account and per client address, with the plans' limiter.

Each login attempt reserves one failure in both counters before the password is
checked, and settles it as one (wrong password) or none (right one): the limiter's
reserve-then-commit makes this exact across workers and replicas when it lives in
Redis, and bounds the attempts in flight as well as the failures. Once a counter has
``limit`` failures in its window, logins it covers answer 429 with Retry-After until the
window ends, whatever the password: a guesser learns nothing more from that account or
address for a while. A successful login does not clear earlier failures.

Counters are named by the account's comparable name (whether it exists or not, so the
answer does not tell) and by the client address.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from hashlib import sha256

from openmaas.access.limiter import Counter, Demand, Limiter, logger
from openmaas.domain.errors import RateLimited, Unauthorized
from openmaas.domain.plans import Metric
from openmaas.domain.usernames import comparable

# Reserved like an input token, so that the reservation can settle as 0 or 1.
_ONE_FAILURE = Demand(input_tokens=1)


class LoginThrottle:
    def __init__(
        self, limiter: Limiter, *, per_account: int, per_address: int, window_s: float
    ) -> None:
        self.limiter = limiter
        self.per_account = per_account
        self.per_address = per_address
        self.window_s = window_s

    def _counters(self, login: str, address: str | None) -> list[Counter]:
        # Hashed: a counter's key must not carry what a client typed (Redis key syntax).
        account = sha256(comparable(login).encode("utf-8", "surrogateescape")).hexdigest()
        counters = [
            Counter(
                f"login:account:{account}", Metric.INPUT_TOKENS, self.per_account, self.window_s
            )
        ]
        if address:
            counters.append(
                Counter(
                    f"login:address:{address}",
                    Metric.INPUT_TOKENS,
                    self.per_address,
                    self.window_s,
                )
            )
        return counters

    @asynccontextmanager
    async def attempt(self, login: str, address: str | None) -> AsyncIterator[None]:
        """Around one login: 429 when too many failed before; the attempt counts as a
        failure when its body raises ``Unauthorized`` (a wrong password)."""
        outcome = await self.limiter.acquire(self._counters(login, address), _ONE_FAILURE)
        if not outcome.admitted:
            state = outcome.states[0]
            raise RateLimited(
                "too many failed logins; try again later",
                code="too_many_logins",
                headers={"Retry-After": str(state.reset_after)},
            )
        failures = 0
        try:
            yield
        except Unauthorized:
            failures = 1  # a wrong password (a disabled account or an outage is not)
            raise
        finally:
            if outcome.hold is not None:
                try:
                    await self.limiter.settle(outcome.hold, failures, 0)
                except Exception:  # the reservation expires on its own
                    logger.warning("could not count a login attempt", exc_info=True)

"""Usage metering: events aggregated in memory, written to the database in batches.

``record`` is called once per inference request; it only adds numbers to an in-memory
bucket per (minute, user, application, key, model, version, endpoint, protocol, status,
and the plan, rule and unit prices in force: the price is fixed when the tokens are used).
A background task writes the buckets every ``usage_flush_seconds`` in one transaction,
and ``stop`` writes what is left on a graceful shutdown. A failed write keeps the buckets
and retries them on the next flush; past ``max_buckets`` they go to spill files
(``spill.py``), written when the database answers again, and so does what a final flush
could not write. A crash (SIGKILL, power loss) loses at most the events since the last
flush.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import anyio

from openmaas.background import Periodic
from openmaas.domain.money import to_decimal
from openmaas.domain.usage import UsageEvent
from openmaas.metering.spill import UsageSpill
from openmaas.store import Database, usage_repo

__all__ = ["UsageEvent", "UsageRecorder"]

logger = logging.getLogger("openmaas.metering")

_BucketKey = tuple[
    datetime, int | None, int | None, int | None, str, int | None, str | None, str, int, tuple
]
_UNPRICED: tuple[Any, ...] = (None, None, None, None, None, None, None)


@dataclass(slots=True)
class _Bucket:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    latency_ms_sum: float = 0.0
    latency_ms_max: float = 0.0


class UsageRecorder:
    def __init__(
        self,
        db: Database,
        *,
        flush_seconds: float,
        spill: UsageSpill,
        max_buckets: int,
        on_drop: Callable[[int], None] = lambda _requests: None,
    ) -> None:
        self.db = db
        self.flush_seconds = flush_seconds
        self.spill = spill
        self.max_buckets = max_buckets
        self.on_drop = on_drop
        self._buckets: dict[_BucketKey, _Bucket] = {}
        self._flusher = Periodic(
            "openmaas-usage-flush",
            flush_seconds,
            self.flush,
            logger=logger,
            failure="could not flush usage; it stays in memory for the next try",
        )
        self._flush_lock = asyncio.Lock()
        self.dropped = 0  # requests whose usage was lost (malformed, or spill files full)

    def record(self, event: UsageEvent) -> None:
        """Count one request; synchronous, O(1), no I/O, never raises."""
        try:
            at = event.at
            if at.tzinfo is not UTC:  # the hot path records in UTC already
                at = at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
            key: _BucketKey = (
                at.replace(second=0, microsecond=0),
                event.user_id,
                event.application_id,
                event.key_id,
                event.model[:128],
                event.version,
                event.endpoint[:128] if event.endpoint else None,
                event.protocol[:16],
                int(event.status),
                event.terms.billing_key if event.terms is not None else _UNPRICED,
            )
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket()
            latency = float(event.latency_ms)
            bucket.requests += 1
            bucket.input_tokens += max(0, int(event.input_tokens))
            bucket.output_tokens += max(0, int(event.output_tokens))
            bucket.latency_ms_sum += latency
            bucket.latency_ms_max = max(bucket.latency_ms_max, latency)
        except Exception:
            self.dropped += 1
            self.on_drop(1)
            logger.warning("could not record a usage event: %r", event, exc_info=True)

    @property
    def pending(self) -> int:
        """Requests counted in memory and not yet written."""
        return sum(bucket.requests for bucket in self._buckets.values())

    async def flush(self) -> None:
        async with self._flush_lock:
            buckets, self._buckets = self._buckets, {}
            if buckets:
                rows = [_row(key, bucket) for key, bucket in buckets.items()]
                try:
                    await self._write(rows)
                except Exception:
                    for key, bucket in buckets.items():
                        self._merge(key, bucket)
                    logger.debug("could not write %d usage rows; will retry", len(rows))
                    if len(self._buckets) > self.max_buckets:
                        await self._spill()
                    raise
            if await anyio.to_thread.run_sync(self.spill.pending):
                await self._replay()

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        async with self.db.session() as session:
            await usage_repo.insert_usage(session=session, rows=rows)
            await session.commit()

    async def _spill(self) -> None:
        """Move every bucket from memory to a spill file (as much as its budget takes)."""
        buckets, self._buckets = self._buckets, {}
        rows = [_row(key, bucket) for key, bucket in buckets.items()]
        try:
            dropped = await anyio.to_thread.run_sync(self.spill.write, rows)
        except OSError as exc:
            dropped = sum(int(row["requests"]) for row in rows)
            logger.error("could not spill usage to %s: %s", self.spill.directory, exc)
        if dropped:
            self.dropped += dropped
            self.on_drop(dropped)
            logger.error(
                "usage of %d requests dropped: the database is down and the spill files "
                "are full (usage_spill_bytes)",
                dropped,
            )

    async def _replay(self) -> None:
        """Write the spilled usage, a file per transaction; a failed one goes back."""
        for path, rows in await anyio.to_thread.run_sync(self.spill.claim):
            try:
                if rows:
                    await self._write(rows)
            except Exception:
                await anyio.to_thread.run_sync(self.spill.give_back, path)
                raise
            await anyio.to_thread.run_sync(self.spill.done, path)
            logger.info("wrote %d spilled usage rows", len(rows))

    def _merge(self, key: _BucketKey, old: _Bucket) -> None:
        bucket = self._buckets.setdefault(key, _Bucket())
        bucket.requests += old.requests
        bucket.input_tokens += old.input_tokens
        bucket.output_tokens += old.output_tokens
        bucket.latency_ms_sum += old.latency_ms_sum
        bucket.latency_ms_max = max(bucket.latency_ms_max, old.latency_ms_max)

    async def start(self) -> None:
        self._flusher.start()

    async def stop(self) -> None:
        await self._flusher.stop()
        # The final flush; one retry covers a connection the pool had let go stale. A
        # request that ends while a flush is writing lands in a new bucket: flush again.
        for attempt in range(3):
            try:
                await self.flush()
                if not self._buckets:
                    return
                await self.flush()
                return
            except Exception:
                if attempt == 2:
                    # Kept for the next start, which writes it once the database answers.
                    pending = self.pending
                    await self._spill()
                    logger.error(
                        "usage of %d requests could not be written; kept in %s",
                        pending,
                        self.spill.directory,
                    )
                await asyncio.sleep(0.2)


def _price(value: Any) -> Decimal | None:
    return None if value is None else to_decimal(value)


def _row(key: _BucketKey, bucket: _Bucket) -> dict[str, Any]:
    minute, user_id, application_id, key_id, model, version, endpoint, protocol, status, terms = key
    plan_id, plan, rule, rule_name, per_request, per_1k_input, per_1k_output = terms
    return {
        "plan_id": plan_id,
        "plan": plan,
        "rule": rule,
        "rule_name": rule_name,
        "price_per_request": _price(per_request),
        "price_per_1k_input_tokens": _price(per_1k_input),
        "price_per_1k_output_tokens": _price(per_1k_output),
        "minute": minute,
        "day": minute.date(),
        "month": minute.strftime("%Y-%m"),
        "user_id": user_id,
        "application_id": application_id,
        "key_id": key_id,
        "model": model,
        "version": version,
        "endpoint": endpoint,
        "protocol": protocol,
        "status": status,
        "requests": bucket.requests,
        "input_tokens": bucket.input_tokens,
        "output_tokens": bucket.output_tokens,
        "latency_ms_sum": bucket.latency_ms_sum,
        "latency_ms_max": bucket.latency_ms_max,
    }

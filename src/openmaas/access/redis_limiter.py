"""The limiter shared by every worker and replica: counters in Redis, one script per step.

Each counter is a hash (``s``: its window's start, ``u``: used, ``h``: held by
reservations, in milliseconds and units) and a sorted set of its reservations
(``<key>:held``, members ``<id>:<amount>`` scored by expiry). The scripts name the sorted
set after the hash, so the limiter needs a single Redis (standalone or with Sentinel),
not a Redis Cluster. Redis runs a script alone, which makes "all windows or none" atomic
across processes. Time is Redis' own clock, the same for every replica.

The four steps (acquire, settle, renew, add) are functions of one script, registered
once (SCRIPT LOAD) and called with EVALSHA (loaded again if Redis forgets it). Calls
made while the event loop is busy with other requests, or while two calls to Redis are
out, leave together as one EVALSHA that runs each of them in turn: under load a worker
pays one command, one round trip and one reply for many requests. Packing and
reading a command per request in the client cost more than the scripts cost Redis.

A failure of the store is ``ServiceUnavailable``, or, with ``limits_fail_open``, a
request admitted uncounted (see ``limiter.py``).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Sequence
from typing import Any

from openmaas.access.limiter import (
    Counter,
    Demand,
    Hold,
    Limiter,
    Outcome,
    WindowState,
    logger,
    needs,
)
from openmaas.domain.plans import Metric

_CONNECTIONS = 64
# Redis answers in well under a millisecond; one that takes seconds is down or hanging.
_TIMEOUT_S = 2.0
# Calls per script run: Redis serves nobody else while a script runs.
_MOST_PER_BATCH = 256
# Batches out at once. One would make a request wait behind the settlement of the one
# before it (a round trip more at low concurrency); more only makes the batches smaller.
_MOST_IN_FLIGHT = 2
# One step waiting for the next batch: its operation, keys, two arguments, its reply.
_Call = tuple[int, list[str], str, str, "asyncio.Future[Any]"]
_ACQUIRE_OP, _SETTLE_OP, _RENEW_OP, _ADD_OP = 1, 2, 3, 4

# Arguments travel as few strings as possible: packing each one costs the client more
# than the script costs Redis. Every script reads its numbers with _WORDS.
_WORDS = """
local function words(text)
  local out = {}
  for word in string.gmatch(text, '%S+') do out[#out + 1] = word end
  return out
end
"""

# KEYS: each counter's hash (its reservations are the sorted set "<key>:held").
# First argument: "id input-tokens wanted-output least-output reservation-ms"; second:
# per counter "metric limit window-ms fixed-start-ms" (0: opens with first use).
# Reply: {1, allowance, then per counter: remaining, window end, window start}, or
# {0, failed counter (1-based), remaining, window end}.
_ACQUIRE = """
local function acquire(KEYS, first, second)
local head = words(first)
local spec = words(second)
local id = head[1]
local input = tonumber(head[2])
local allowance = tonumber(head[3])
local least = tonumber(head[4])
if allowance <= 0 then least = 0 end
local ttl = tonumber(head[5])
local n = #KEYS
local frees, starts, ends, fresh = {}, {}, {}, {}
for i = 1, n do
  local base = (i - 1) * 4
  local metric = tonumber(spec[base + 1])
  local limit = tonumber(spec[base + 2])
  local span = tonumber(spec[base + 3])
  local counter, held = KEYS[i], KEYS[i] .. ':held'
  local state = redis.call('HMGET', counter, 's', 'u', 'h')
  local start = tonumber(state[1])
  local used, holding = 0, 0
  if start then
    used = tonumber(state[2]) or 0
    holding = tonumber(state[3]) or 0
    if holding > 0 then
      local expired = redis.call('ZRANGEBYSCORE', held, '-inf', now)
      if #expired > 0 then
        local freed = 0
        for _, member in ipairs(expired) do
          freed = freed + tonumber(string.match(member, ':(%d+)$'))
        end
        redis.call('ZREMRANGEBYSCORE', held, '-inf', now)
        holding = holding - freed
        redis.call('HSET', counter, 'h', holding)
      end
    end
  else
    start = tonumber(spec[base + 4])
    if start == 0 then start = now end
    fresh[i] = true
  end
  local free = limit - used - holding
  local ok
  if metric == 0 then
    ok = free >= 1
  elseif metric == 1 then
    ok = free >= input
  elseif metric == 2 then
    ok = free >= least
    if free < allowance then allowance = free end
  else
    ok = free >= input + least
    if free - input < allowance then allowance = free - input end
  end
  if not ok then
    if free < 0 then free = 0 end
    return {0, i, free, start + span}
  end
  frees[i], starts[i], ends[i] = free, start, start + span
end
if allowance < 0 then allowance = 0 end
local out = {1, allowance}
for i = 1, n do
  local metric = tonumber(spec[(i - 1) * 4 + 1])
  local counter, held = KEYS[i], KEYS[i] .. ':held'
  local amount
  if metric == 0 then amount = 1
  elseif metric == 1 then amount = input
  elseif metric == 2 then amount = allowance
  else amount = input + allowance end
  if fresh[i] then
    redis.call('HSET', counter, 's', starts[i])
    redis.call('PEXPIREAT', counter, ends[i])
  end
  if metric == 0 then
    redis.call('HINCRBY', counter, 'u', 1)
  elseif amount > 0 then
    redis.call('HINCRBY', counter, 'h', amount)
    redis.call('ZADD', held, now + ttl, id .. ':' .. amount)
    redis.call('PEXPIREAT', held, ends[i])
  end
  out[#out + 1] = frees[i] - amount
  out[#out + 1] = ends[i]
  out[#out + 1] = starts[i]
end
return out
end
"""

# KEYS as above, for the hold's counters. First argument: "id input-used output-used";
# second: per counter "metric amount-held window-start".
_SETTLE = """
local function settle(KEYS, first, second)
local head = words(first)
local spec = words(second)
local id = head[1]
local input = tonumber(head[2])
local output = tonumber(head[3])
for i = 1, #KEYS do
  local base = (i - 1) * 3
  local metric = tonumber(spec[base + 1])
  local amount = spec[base + 2]
  local counter, held = KEYS[i], KEYS[i] .. ':held'
  if tonumber(redis.call('HGET', counter, 's')) == tonumber(spec[base + 3]) then
    if redis.call('ZREM', held, id .. ':' .. amount) == 1 then
      redis.call('HINCRBY', counter, 'h', -tonumber(amount))
    end
    local spent = input + output
    if metric == 1 then spent = input elseif metric == 2 then spent = output end
    if spent > 0 then redis.call('HINCRBY', counter, 'u', spent) end
  end
end
return 1
end
"""

# KEYS as above. First argument: "id reservation-ms"; second: per counter
# "amount window-start".
_RENEW = """
local function renew(KEYS, first, second)
local head = words(first)
local spec = words(second)
for i = 1, #KEYS do
  local base = (i - 1) * 2
  if tonumber(redis.call('HGET', KEYS[i], 's')) == tonumber(spec[base + 2]) then
    local member = head[1] .. ':' .. spec[base + 1]
    redis.call('ZADD', KEYS[i] .. ':held', 'XX', now + tonumber(head[2]), member)
  end
end
return 1
end
"""

# KEYS: one counter's hash. First argument: "amount window-ms fixed-start-ms" (0: now).
_ADD = """
local function add(KEYS, first)
local spec = words(first)
if not redis.call('HGET', KEYS[1], 's') then
  local start = tonumber(spec[3])
  if start == 0 then start = now end
  redis.call('HSET', KEYS[1], 's', start)
  redis.call('PEXPIREAT', KEYS[1], start + tonumber(spec[2]))
end
redis.call('HINCRBY', KEYS[1], 'u', tonumber(spec[1]))
return 1
end
"""

# KEYS: every call's keys, in order. ARGV[1]: per call "operation key-count"; then two
# arguments per call. Reply: each call's reply, or {-1, message} for a call that failed
# (the others still ran: a script cannot undo what one call wrote before it failed).
_BATCH = (
    _WORDS
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
    + _ACQUIRE
    + _SETTLE
    + _RENEW
    + _ADD
    + """
local steps = {acquire, settle, renew, add}
local plan = words(ARGV[1])
local replies = {}
local taken = 0
for c = 1, #plan / 2 do
  local count = tonumber(plan[2 * c])
  local keys = {}
  for i = 1, count do keys[i] = KEYS[taken + i] end
  taken = taken + count
  local ok, reply = pcall(steps[tonumber(plan[2 * c - 1])], keys, ARGV[2 * c], ARGV[2 * c + 1])
  if ok then
    replies[c] = reply
  else
    if type(reply) == 'table' then reply = reply.err end
    replies[c] = {-1, tostring(reply)}
  end
end
return replies
"""
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@functools.lru_cache(maxsize=4096)
def _spec(counter: Counter) -> str:
    """A counter as the acquire step reads it (the same few counters come again and again)."""
    return f"{int(counter.metric)} {counter.limit} {_ms(counter.span)} {_ms(counter.start)}"


def _ms(seconds: float | None) -> int:
    return round(seconds * 1000) if seconds else 0


class RedisLimiter(Limiter):
    shared = True

    def __init__(
        self, url: str, *, prefix: str, reservation_ttl: float, fail_open: bool = False
    ) -> None:
        super().__init__(reservation_ttl=reservation_ttl, fail_open=fail_open)
        from redis.asyncio import BlockingConnectionPool, Redis

        # A bounded pool that makes callers wait for a connection: the default pool
        # refuses outright once full, which under a burst would turn into 503s.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=_CONNECTIONS,
            timeout=10,
            socket_connect_timeout=_TIMEOUT_S,
            socket_timeout=_TIMEOUT_S,
        )
        self.client = Redis(connection_pool=pool)
        self.prefix = f"{prefix}:limits:"
        self._batch = self.client.register_script(_BATCH)
        self._ttl_ms = _ms(reservation_ttl)
        self._loaded = False
        self._pending: list[_Call] = []
        self._flush_scheduled = False
        self._in_flight = 0
        self._sends: set[asyncio.Task[None]] = set()

    def _keys(self, counters: Sequence[Counter]) -> list[str]:
        return [self.prefix + counter.key for counter in counters]

    async def _call(self, operation: int, keys: list[str], first: str, second: str = "") -> Any:
        """Run one step in the next batch this worker sends; its reply (None: failed and
        failing open)."""
        try:
            if not self._loaded:
                await self.client.script_load(self._batch.script)
                self._loaded = True
            loop = asyncio.get_running_loop()
            future: asyncio.Future[Any] = loop.create_future()
            self._pending.append((operation, keys, first, second, future))
            if not self._flush_scheduled and self._in_flight < _MOST_IN_FLIGHT:
                self._flush_scheduled = True
                loop.call_soon(self._flush)
            reply = await future
        except Exception as exc:
            self._loaded = False  # a Redis that comes back may have forgotten the script
            self._failed(exc)
            return None
        if self.degraded:
            self._recovered()
        return reply

    async def check(self) -> bool:
        try:
            async with asyncio.timeout(_TIMEOUT_S):
                answered = bool(await self.client.ping())
        except Exception:
            answered = False
        if answered and self.degraded:
            self._recovered()
        elif not answered and not self.degraded:
            self.degraded = True
            logger.warning("the rate limit store is unreachable (health check)")
        return answered

    def _flush(self) -> None:
        """Send what waits as one batch; calls made meanwhile wait for its reply."""
        self._flush_scheduled = False
        if not self._pending:
            return
        batch = self._pending[:_MOST_PER_BATCH]
        del self._pending[:_MOST_PER_BATCH]
        self._in_flight += 1
        task = asyncio.create_task(self._send(batch))
        self._sends.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sends.discard(task)
        self._in_flight -= 1
        if self._pending and not self._flush_scheduled:
            self._flush()

    async def _send(self, batch: list[_Call]) -> None:
        from redis.exceptions import NoScriptError, ResponseError

        plan = " ".join(f"{operation} {len(keys)}" for operation, keys, *_rest in batch)
        keys = [key for _op, call_keys, *_rest in batch for key in call_keys]
        args = [plan]
        for _op, _keys, first, second, _future in batch:
            args += (first, second)
        try:
            try:
                replies = await self.client.evalsha(self._batch.sha, len(keys), *keys, *args)
            except NoScriptError:
                # Redis restarted or was flushed: nothing ran; register the script again.
                await self.client.script_load(self._batch.script)
                replies = await self.client.evalsha(self._batch.sha, len(keys), *keys, *args)
        except Exception as exc:
            for *_call, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (*_call, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, list) and reply and reply[0] == -1:
                future.set_exception(ResponseError(_text(reply[1])))
            else:
                future.set_result(reply)

    async def acquire(self, counters: Sequence[Counter], demand: Demand) -> Outcome:
        hold_id = self._new_id()
        head = (
            f"{hold_id} {demand.input_tokens} {demand.output_tokens} "
            f"{demand.least_output} {self._ttl_ms}"
        )
        spec = " ".join([_spec(counter) for counter in counters])
        reply = await self._call(_ACQUIRE_OP, self._keys(counters), head, spec)
        if reply is None:  # the store failed and the operator chose to fail open
            until = time.time() + 1
            uncounted = tuple(WindowState(c.limit, c.limit, until) for c in counters)
            return Outcome(True, demand.output_tokens, uncounted)
        if reply[0] == 0:
            index = int(reply[1]) - 1
            state = WindowState(counters[index].limit, int(reply[2]), int(reply[3]) / 1000)
            return Outcome(False, 0, (state,), failed=index)
        allowance = int(reply[1])
        states: list[WindowState] = []
        held: list[tuple[Counter, float]] = []
        for i, counter in enumerate(counters):
            remaining, end, start = reply[2 + 3 * i : 5 + 3 * i]
            states.append(WindowState(counter.limit, int(remaining), int(end) / 1000))
            if counter.metric is not Metric.REQUESTS:
                held.append((counter, float(start)))
        hold = None
        if held:
            hold = Hold(
                hold_id,
                tuple(counter for counter, _start in held),
                tuple(needs(counter.metric, demand, allowance) for counter, _start in held),
                tuple(start for _counter, start in held),
            )
        return Outcome(True, allowance, tuple(states), hold)

    async def settle(self, hold: Hold, input_tokens: int, output_tokens: int) -> None:
        spec = " ".join(
            f"{int(counter.metric)} {amount} {int(start)}"
            for counter, amount, start in zip(hold.counters, hold.amounts, hold.starts, strict=True)
        )
        head = f"{hold.id} {input_tokens} {output_tokens}"
        await self._call(_SETTLE_OP, self._keys(hold.counters), head, spec)

    async def renew(self, hold: Hold) -> None:
        spec = " ".join(
            f"{amount} {int(start)}"
            for amount, start in zip(hold.amounts, hold.starts, strict=True)
        )
        await self._call(_RENEW_OP, self._keys(hold.counters), f"{hold.id} {self._ttl_ms}", spec)

    async def add(self, counter: Counter, amount: int) -> None:
        key = self.prefix + counter.key
        spec = f"{amount} {_ms(counter.span)} {_ms(counter.start)}"
        await self._call(_ADD_OP, [key], spec)

    async def close(self) -> None:
        if self._sends:
            await asyncio.gather(*self._sends, return_exceptions=True)
        await self.client.aclose(close_connection_pool=True)

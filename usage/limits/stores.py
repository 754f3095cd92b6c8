"""The counters: in Redis (one Lua script per reservation, shared by every process) or in process.

Both stores keep, per counter key, three integers: calls `c`, tokens `t` and micro-USD `u`.

`reserve(keys, caps, amounts)` is atomic: it reads every counter, and only if every capped metric of
every counter stays within its cap after adding `amounts` does it add them all (and set each key to
expire after its window); otherwise it changes nothing and says which counter and metric refused.
`adjust(keys, deltas)` adds (usually negative) deltas to counters that still exist: the reconcile.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis
import redis.asyncio as aioredis

logger = logging.getLogger(__name__)

Triple = tuple[int, int, int]
METRICS = ("calls", "tokens", "usd")

# KEYS: the counters. ARGV: calls, tokens, micro-USD to add; then per key: expire-at (epoch s) and
# the caps of calls, tokens and micro-USD (-1: uncapped).
# Answers {1, c1, t1, u1, c2, ...} (values after adding) or {0, index, metric, c, t, u} (refused;
# the refusing counter's current values; metric 1 calls, 2 tokens, 3 USD).
RESERVE_LUA = """
local add = {tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])}
for i = 1, #KEYS do
  local raw = redis.call('HMGET', KEYS[i], 'c', 't', 'u')
  local base = 3 + (i - 1) * 4
  local values = {tonumber(raw[1]) or 0, tonumber(raw[2]) or 0, tonumber(raw[3]) or 0}
  for m = 1, 3 do
    local cap = tonumber(ARGV[base + 1 + m])
    if cap >= 0 and values[m] + add[m] > cap then
      return {0, i, m, values[1], values[2], values[3]}
    end
  end
end
local out = {1}
for i = 1, #KEYS do
  local base = 3 + (i - 1) * 4
  out[#out + 1] = redis.call('HINCRBY', KEYS[i], 'c', add[1])
  out[#out + 1] = redis.call('HINCRBY', KEYS[i], 't', add[2])
  out[#out + 1] = redis.call('HINCRBY', KEYS[i], 'u', add[3])
  redis.call('EXPIREAT', KEYS[i], ARGV[base + 1])
end
return out
"""

# KEYS: counters to reconcile. ARGV: per key, the deltas of calls, tokens and micro-USD. A counter
# that has expired meanwhile is left alone (re-creating it would leave a negative count behind).
ADJUST_LUA = """
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local base = (i - 1) * 3
    if ARGV[base + 1] ~= '0' then redis.call('HINCRBY', KEYS[i], 'c', ARGV[base + 1]) end
    if ARGV[base + 2] ~= '0' then redis.call('HINCRBY', KEYS[i], 't', ARGV[base + 2]) end
    if ARGV[base + 3] ~= '0' then redis.call('HINCRBY', KEYS[i], 'u', ARGV[base + 3]) end
  end
end
return #KEYS
"""

# Reconciles wait at most this long for a reservation's pipeline to ride along with.
ADJUST_DELAY_SECONDS = 0.005


@dataclass(frozen=True, slots=True)
class ReserveResult:
    ok: bool
    values: list[Triple]  # ok: every counter after adding; refused: [the refusing counter's values]
    refused_index: int = -1
    refused_metric: str = ""


class LimitStoreUnavailable(Exception):
    """The store could not be reached (Redis down or too slow)."""


class LimitStore(Protocol):
    name: str

    async def reserve(self, keys: Sequence[str], expire_at: Sequence[int], caps: Sequence[Triple],
                      amounts: Triple) -> ReserveResult: ...

    async def adjust(self, keys: Sequence[str], deltas: Triple) -> None: ...

    def read(self, keys: Sequence[str]) -> list[Triple]: ...

    async def drain(self) -> None: ...

    async def aclose(self) -> None: ...


@functools.cache
def _sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()  # the name Redis gives a script


def _parse_reserve(raw: Sequence[int]) -> ReserveResult:
    if int(raw[0]) == 1:
        flat = [int(v) for v in raw[1:]]
        return ReserveResult(ok=True, values=[(flat[i], flat[i + 1], flat[i + 2]) for i in range(0, len(flat), 3)])
    return ReserveResult(ok=False, values=[(int(raw[3]), int(raw[4]), int(raw[5]))],
                         refused_index=int(raw[1]) - 1, refused_metric=METRICS[int(raw[2]) - 1])


@dataclass(slots=True)
class _Op:
    sha: str
    keys: list[str]
    args: list[int]
    future: asyncio.Future[Any] | None  # None: nobody waits (a reconcile)


class RedisLimitStore:
    """Counters in Redis, shared by every process: exact across processes and servers.

    Calls are auto-pipelined: one pipeline (one write, one read) is in flight at a time, and every
    reservation made meanwhile goes in the next one, so under load many calls share a round trip; a
    lone call still goes at once. Each script stays atomic on its own. Reconciles are not waited for: they are
    summed per counter and ride along with the next pipeline (within ADJUST_DELAY_SECONDS).
    """

    name = "redis"

    def __init__(self, url: str, *, timeout: float = 0.5, max_connections: int = 64) -> None:
        # A bounded pool that waits for a free connection: a burst queues briefly instead of
        # opening a connection per call (or failing "too many connections").
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=max(timeout, 1.0),
            socket_timeout=timeout, socket_connect_timeout=timeout,
        )
        self._redis = aioredis.Redis(connection_pool=pool)
        self._scripts = {_sha(RESERVE_LUA): RESERVE_LUA, _sha(ADJUST_LUA): ADJUST_LUA}
        self._pending: list[_Op] = []
        self._deltas: dict[str, list[int]] = {}
        self._adjust_timer = False
        self._flush_scheduled = False
        self._in_flight: set[asyncio.Task[None]] = set()
        self._url, self._timeout = url, timeout
        self._sync: redis.Redis | None = None

    # ---- auto-pipelining

    def _submit(self, sha: str, keys: list[str], args: list[int]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append(_Op(sha, keys, args, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._in_flight:
            return  # one round trip at a time: what queues meanwhile goes in the next, all together
        batch, self._pending = self._pending, []
        if self._deltas:
            # Reconciles, summed per counter, ride along in one script call.
            deltas, self._deltas = self._deltas, {}
            args = [d for triple in deltas.values() for d in triple]
            batch.append(_Op(_sha(ADJUST_LUA), list(deltas), args, None))
        if batch:
            task = asyncio.get_running_loop().create_task(self._send(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _execute(self, batch: list[_Op]) -> list[Any]:
        pipe = self._redis.pipeline(transaction=False)
        for op in batch:
            pipe.evalsha(op.sha, len(op.keys), *op.keys, *op.args)
        return list(await pipe.execute(raise_on_error=False))

    async def _send(self, batch: list[_Op]) -> None:
        try:
            results = await self._execute(batch)
            missing = [i for i, r in enumerate(results) if isinstance(r, redis.exceptions.NoScriptError)]
            if missing:  # a new or flushed Redis: load the scripts and send those calls again
                for script in self._scripts.values():
                    await self._redis.script_load(script)
                for i, result in zip(missing, await self._execute([batch[i] for i in missing]), strict=True):
                    results[i] = result
        except (redis.RedisError, OSError) as exc:
            results = [exc] * len(batch)
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.discard(task)  # done: the next round trip may go
        if self._pending or self._deltas:
            self._flush()
        for op, result in zip(batch, results, strict=True):
            if op.future is None:
                if isinstance(result, Exception):
                    # The reservation stays charged: counters over-count until their window ends.
                    logger.error("could not reconcile a limits reservation (%s); it stays charged", result)
            elif not op.future.done():
                if isinstance(result, Exception):
                    op.future.set_exception(LimitStoreUnavailable(str(result)))
                else:
                    op.future.set_result(result)

    async def drain(self) -> None:
        """Wait until every call submitted so far has been answered (tests, shutdown)."""
        while self._pending or self._deltas or self._in_flight or self._flush_scheduled:
            self._flush()
            if self._in_flight:
                await asyncio.gather(*list(self._in_flight), return_exceptions=True)
            await asyncio.sleep(0)

    # ---- the store

    async def reserve(self, keys: Sequence[str], expire_at: Sequence[int], caps: Sequence[Triple],
                      amounts: Triple) -> ReserveResult:
        args: list[int] = list(amounts)
        for when, cap in zip(expire_at, caps, strict=True):
            args += [when, *cap]
        return _parse_reserve(await self._submit(_sha(RESERVE_LUA), list(keys), args))

    async def adjust(self, keys: Sequence[str], deltas: Triple) -> None:
        """Queue the reconcile and return at once: it goes with the next pipeline, at the latest after
        ADJUST_DELAY_SECONDS (until then counters over-count, never under). Errors are logged; the
        reservation then stays charged."""
        if not keys or deltas == (0, 0, 0):
            return
        for key in keys:
            total = self._deltas.setdefault(key, [0, 0, 0])
            for m in range(3):
                total[m] += deltas[m]
        if not self._adjust_timer:
            self._adjust_timer = True
            asyncio.get_running_loop().call_later(ADJUST_DELAY_SECONDS, self._flush_adjustments)

    def _flush_adjustments(self) -> None:
        self._adjust_timer = False
        if self._deltas and not self._flush_scheduled:
            self._flush()

    def read(self, keys: Sequence[str]) -> list[Triple]:
        """Current counters (sync: for the management API)."""
        if self._sync is None:
            self._sync = redis.Redis.from_url(self._url, socket_timeout=2, socket_connect_timeout=2)
        pipe = self._sync.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(key, "c", "t", "u")
        try:
            rows = pipe.execute()
        except redis.RedisError as exc:
            raise LimitStoreUnavailable(str(exc)) from exc
        return [(int(r[0] or 0), int(r[1] or 0), int(r[2] or 0)) for r in rows]

    async def aclose(self) -> None:
        await self.drain()
        await self._redis.aclose()


class MemoryLimitStore:
    """Counters in this process: the embedded demo without Redis (one process, same rules).

    Each method runs without awaiting in between, so on the event loop it is as atomic as the script.
    """

    name = "memory"
    SWEEP_SECONDS = 30.0

    def __init__(self) -> None:
        self._counters: dict[str, list[int]] = {}
        self._expire_at: dict[str, int] = {}
        self._next_sweep = 0.0

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.SWEEP_SECONDS
        for key in [k for k, when in self._expire_at.items() if when <= now]:
            self._counters.pop(key, None)
            self._expire_at.pop(key, None)

    def _get(self, key: str, now: float) -> list[int] | None:
        when = self._expire_at.get(key)
        if when is not None and when <= now:
            self._counters.pop(key, None)
            self._expire_at.pop(key, None)
            return None
        return self._counters.get(key)

    async def reserve(self, keys: Sequence[str], expire_at: Sequence[int], caps: Sequence[Triple],
                      amounts: Triple) -> ReserveResult:
        now = time.time()
        self._sweep(now)
        for index, (key, cap) in enumerate(zip(keys, caps, strict=True)):
            values = self._get(key, now) or [0, 0, 0]
            for m in range(3):
                if cap[m] >= 0 and values[m] + amounts[m] > cap[m]:
                    return ReserveResult(ok=False, values=[(values[0], values[1], values[2])],
                                         refused_index=index, refused_metric=METRICS[m])
        out: list[Triple] = []
        for key, when in zip(keys, expire_at, strict=True):
            counter = self._get(key, now)
            if counter is None:
                counter = self._counters[key] = [0, 0, 0]
            for m in range(3):
                counter[m] += amounts[m]
            self._expire_at[key] = when
            out.append((counter[0], counter[1], counter[2]))
        return ReserveResult(ok=True, values=out)

    async def adjust(self, keys: Sequence[str], deltas: Triple) -> None:
        now = time.time()
        for key in keys:
            values = self._get(key, now)
            if values is not None:
                for m in range(3):
                    values[m] += deltas[m]

    def read(self, keys: Sequence[str]) -> list[Triple]:
        now = time.time()
        out: list[Triple] = []
        for key in keys:
            values = self._get(key, now) or [0, 0, 0]
            out.append((values[0], values[1], values[2]))
        return out

    async def drain(self) -> None:
        return None

    def clear(self) -> None:
        self._counters.clear()
        self._expire_at.clear()

    async def aclose(self) -> None:
        return None


# Without Redis, the serving half and the management API of the one process share these counters.
PROCESS_MEMORY_STORE = MemoryLimitStore()

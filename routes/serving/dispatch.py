"""Resilient calls: a weighted choice among a route's targets, retries with exponential backoff and
full jitter (honouring the vendor's Retry-After), then the route's fallbacks in order.

What fails over: connection failures, timeouts, 429, 5xx and unreadable answers (retried first,
except timeouts), and a rejected credential (not retried: the next target has its own). What does
not: the caller's own mistakes (400s), which no other target would answer differently. A stream is
retried and failed over only until its first chunk: once bytes went to the client, never.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from providers.base import GatewayError, StdRequest, StdResponse, Target, UpstreamError, UpstreamTimeout
from providers.client import UpstreamClient, execute, execute_stream
from providers.streaming import StreamChunk

from .snapshot import RouteEntry, Snapshot

T = TypeVar("T")

BACKOFF_BASE_SECONDS = 0.2
BACKOFF_CAP_SECONDS = 4.0
NOT_RETRIED = frozenset({"UPSTREAM_AUTH_FAILED"})


@dataclass(frozen=True, slots=True)
class Defaults:
    connect: float
    read: float
    total: float
    stream_total: float


@dataclass(frozen=True, slots=True)
class Served:
    """Which target answered: the route whose target it is, and the target itself."""

    route: RouteEntry
    target: Target


def plan(snapshot: Snapshot, route: RouteEntry, rng: random.Random) -> list[RouteEntry]:
    """The order to try: one of the route's weighted targets, then its fallbacks (enabled, same type)."""
    if not route.splits and not route.fallbacks:
        return [route]

    def usable(name: str) -> RouteEntry | None:
        entry = snapshot.routes.get(name)
        return entry if entry is not None and entry.enabled and entry.route_type is route.route_type else None

    shares = [(route, route.split_weight)] + [
        (entry, weight) for name, weight in route.splits if weight > 0 and (entry := usable(name))
    ]
    first = route
    if len(shares) > 1 and sum(w for _, w in shares) > 0:
        first = rng.choices([e for e, _ in shares], weights=[w for _, w in shares])[0]
    order = [first]
    for name in route.fallbacks:
        entry = usable(name)
        if entry is not None and entry not in order:
            order.append(entry)
    return order


def fails_over(error: GatewayError) -> bool:
    return isinstance(error, UpstreamError)


def backoff_delay(attempt: int, error: GatewayError, rng: random.Random) -> float | None:
    """Seconds before retry number `attempt + 1`, or None to give up on this target now."""
    if isinstance(error, UpstreamTimeout) or error.code in NOT_RETRIED:
        return None
    if error.retry_after is not None:
        return error.retry_after if error.retry_after <= BACKOFF_CAP_SECONDS else None
    return rng.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt))


async def _resilient(
    candidates: list[RouteEntry],
    environment: str,
    attempt_call: Callable[[RouteEntry, Target], Awaitable[T]],
    rng: random.Random,
    sleep: Callable[[float], Awaitable[None]],
) -> tuple[T, Served]:
    last: GatewayError | None = None
    for candidate in candidates:
        target = candidate.target_for(environment)
        for attempt in range(candidate.max_retries + 1):
            try:
                return await attempt_call(candidate, target), Served(candidate, target)
            except GatewayError as exc:
                if not fails_over(exc):
                    raise
                last = exc
                delay = backoff_delay(attempt, exc, rng) if attempt < candidate.max_retries else None
                if delay is None:
                    break
                await sleep(delay)
    assert last is not None
    raise last


@dataclass(slots=True)
class Dispatcher:
    client: UpstreamClient
    defaults: Defaults
    rng: random.Random
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    async def call(
        self, snapshot: Snapshot, route: RouteEntry, environment: str, request: StdRequest
    ) -> tuple[StdResponse, Served]:
        async def attempt(entry: RouteEntry, target: Target) -> StdResponse:
            return await execute(
                entry.provider, target, request, client=self.client,
                timeout=entry.total_timeout or self.defaults.total,
                connect_timeout=entry.connect_timeout or self.defaults.connect,
                read_timeout=entry.read_timeout or self.defaults.read,
            )

        return await _resilient(plan(snapshot, route, self.rng), environment, attempt, self.rng, self.sleep)

    async def open_stream(
        self, snapshot: Snapshot, route: RouteEntry, environment: str, request: StdRequest
    ) -> tuple[tuple[StreamChunk | None, AsyncIterator[StreamChunk]], Served]:
        """The first chunk and the rest of a stream; retries and fallbacks only until the first chunk."""

        async def attempt(entry: RouteEntry, target: Target) -> tuple[StreamChunk | None, AsyncIterator[StreamChunk]]:
            chunks = execute_stream(
                entry.provider, target, request, client=self.client,
                timeout=entry.total_timeout or self.defaults.stream_total,
                idle_timeout=entry.read_timeout or self.defaults.read,
                connect_timeout=entry.connect_timeout or self.defaults.connect,
            )
            try:
                return await anext(chunks), chunks
            except StopAsyncIteration:
                return None, chunks
            except BaseException:
                await chunks.aclose()  # type: ignore[attr-defined]  # an async generator
                raise

        return await _resilient(plan(snapshot, route, self.rng), environment, attempt, self.rng, self.sleep)

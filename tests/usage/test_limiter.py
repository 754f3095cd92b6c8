"""The limiter on both stores: reserve and refuse atomically, settle, headers, fail modes, and the
overshoot bound checked as an invariant over random interleavings of reservations and settlements."""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
import redis

from providers.base import ChatMessage, ChatRequest, CommonParams, Usage
from usage.limits import rules
from usage.limits.enforce import RELEASE, Limiter, LimiterUnavailable, LimitExceeded, ModelNotPriced
from usage.limits.rules import Caller, LimitsTable, Rule
from usage.limits.stores import LimitStoreUnavailable, MemoryLimitStore, RedisLimitStore


@dataclass(frozen=True)
class Price:
    """A price in USD per 1M tokens, shaped like usage.pricing.Price."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal

REDIS_URL = os.environ.get("REDIS_URL", "")
needs_redis = pytest.mark.skipif(not REDIS_URL, reason="REDIS_URL is not set: the Redis limit store is not tested "
                                                       "(the in-process store is)")

CALLER = Caller(route_id=1, route_name="chat", consumer_id=7, consumer_name="alice", team_id=3, team_name="search",
                provider="mock", model="mock-1")
PRICE = Price(Decimal("1000"), Decimal("2000"))  # 1000 / 2000 micro-USD per input / output token


def chat(text: str = "Hello world", max_tokens: int | None = 20) -> ChatRequest:
    return ChatRequest(messages=[ChatMessage("user", text)], params=CommonParams(max_tokens=max_tokens))


def route_rule(**caps: Any) -> LimitsTable:
    return LimitsTable(by_route={1: (Rule(1, rules.ROUTE_PER_CONSUMER, "minute", route_id=1, **caps),)})


def flush(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture(params=["memory", pytest.param("redis", marks=needs_redis)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    if request.param == "memory":
        yield MemoryLimitStore()
        return
    store = RedisLimitStore(REDIS_URL)
    try:
        yield store
    finally:
        await store.aclose()


@pytest.fixture
def prefix() -> Any:
    value = f"test-{uuid.uuid4().hex[:10]}:"
    yield value
    if REDIS_URL:
        flush(value)


def limiter(store: Any, prefix: str, **kwargs: Any) -> Limiter:
    return Limiter(store, key_prefix=prefix, price_of=lambda provider, model: PRICE, **kwargs)


async def test_calls_limit_lets_exactly_n_through_under_concurrency(store: Any, prefix: str) -> None:
    lim = limiter(store, prefix)
    table = route_rule(calls=50)
    results = await asyncio.gather(*(lim.reserve(table, CALLER, chat(), route_max_tokens=None) for _ in range(200)),
                                   return_exceptions=True)
    passed = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, LimitExceeded)]
    assert len(passed) == 50 and len(refused) == 150
    assert "50 calls per minute for consumer 'alice' on route 'chat'" in refused[0].message
    assert refused[0].status == 429 and refused[0].retry_after >= 1
    assert refused[0].headers["X-RateLimit-Limit"] == "50" and refused[0].headers["X-RateLimit-Remaining"] == "0"


async def test_refused_call_charges_nothing_anywhere(store: Any, prefix: str) -> None:
    lim = limiter(store, prefix)
    table = LimitsTable(by_route={1: (Rule(1, rules.ROUTE, "minute", calls=100, route_id=1),
                                      Rule(2, rules.ROUTE_PER_CONSUMER, "minute", tokens=30, route_id=1))})
    first = await lim.reserve(table, CALLER, chat(), route_max_tokens=None)  # reserves 2 + 20 tokens
    assert first is not None and first.tokens == 22
    with pytest.raises(LimitExceeded) as exc:
        await lim.reserve(table, CALLER, chat(), route_max_tokens=None)
    assert "30 tokens per minute" in exc.value.message and "needs up to 22 tokens" in exc.value.message
    checks = table.checks_for(CALLER, time.time())
    # The route's own counter was not charged by the refused call either.
    await lim.store.drain()
    assert sorted(lim.counters(checks)) == [(1, 22, 42_000), (1, 22, 42_000)]


async def test_settle_replaces_the_reservation_with_real_usage(store: Any, prefix: str) -> None:
    lim = limiter(store, prefix)
    table = route_rule(tokens=100, usd=Decimal("1"))
    reservation = await lim.reserve(table, CALLER, chat(), route_max_tokens=None)
    assert reservation is not None
    assert (reservation.tokens, reservation.usd_micros) == (22, 2 * 1000 + 20 * 2000)
    await lim.settle(reservation, Usage(input_tokens=2, output_tokens=9))
    await lim.settle(reservation, Usage(input_tokens=2, output_tokens=9))  # twice: no effect
    check = table.checks_for(CALLER, time.time())
    await lim.store.drain()
    assert lim.counters(check) == [(1, 11, 2 * 1000 + 9 * 2000)]
    failed = await lim.reserve(table, CALLER, chat(), route_max_tokens=None)
    await lim.settle(failed, RELEASE)  # a failed call: tokens and money released, the call counted
    await lim.store.drain()
    assert lim.counters(check) == [(2, 11, 20_000)]
    aborted = await lim.reserve(table, CALLER, chat(), route_max_tokens=None)
    await lim.settle(aborted, None)  # usage unknown: the reservation stays whole
    await lim.store.drain()
    assert lim.counters(check) == [(3, 33, 62_000)]


async def test_request_without_max_tokens_is_capped_when_tokens_are_limited(store: Any, prefix: str) -> None:
    lim = limiter(store, prefix, default_max_tokens=64)
    request = chat(max_tokens=None)
    reservation = await lim.reserve(route_rule(tokens=1000), CALLER, request, route_max_tokens=None)
    assert request.params.max_tokens == 64 and reservation is not None and reservation.tokens == 66
    route_capped = chat(max_tokens=None)
    await lim.reserve(route_rule(tokens=1000), CALLER, route_capped, route_max_tokens=16)
    assert route_capped.params.max_tokens == 16
    calls_only = chat(max_tokens=None)
    await lim.reserve(route_rule(calls=10), CALLER, calls_only, route_max_tokens=None)
    assert calls_only.params.max_tokens is None  # nothing metered: the request goes as sent


async def test_headers_show_the_tightest_calls_limit(store: Any, prefix: str) -> None:
    lim = limiter(store, prefix)
    table = LimitsTable(by_route={1: (Rule(1, rules.ROUTE, "minute", calls=100, route_id=1),
                                      Rule(2, rules.ROUTE_PER_CONSUMER, "day", calls=3, route_id=1))})
    reservation = await lim.reserve(table, CALLER, chat(), route_max_tokens=None)
    assert reservation is not None
    headers = reservation.headers
    assert headers["X-RateLimit-Limit"] == "3" and headers["X-RateLimit-Remaining"] == "2"
    assert 1 <= int(headers["X-RateLimit-Reset"]) <= 86_400
    assert headers["X-RateLimit-Scope"] == "calls per day, consumer 'alice' on route 'chat'"


async def test_money_budget_without_a_price_is_refused(prefix: str) -> None:
    lim = Limiter(MemoryLimitStore(), key_prefix=prefix, price_of=lambda provider, model: None)
    with pytest.raises(ModelNotPriced):
        await lim.reserve(route_rule(usd=Decimal("5")), CALLER, chat(), route_max_tokens=None)
    assert await lim.reserve(LimitsTable(), CALLER, chat(), route_max_tokens=None) is None


class DownStore(MemoryLimitStore):
    async def reserve(self, *args: Any, **kwargs: Any) -> Any:
        raise LimitStoreUnavailable("connection refused")


async def test_unreachable_store_fails_closed_by_default_and_open_when_configured(prefix: str,
                                                                                   caplog: Any) -> None:
    with pytest.raises(LimiterUnavailable) as exc:
        await limiter(DownStore(), prefix).reserve(route_rule(calls=1), CALLER, chat(), route_max_tokens=None)
    assert exc.value.status == 503
    opened = limiter(DownStore(), prefix, fail_open=True)
    assert await opened.reserve(route_rule(calls=1), CALLER, chat(), route_max_tokens=None) is None
    assert "LIMITS NOT ENFORCED" in caplog.text


@needs_redis
async def test_real_redis_down_fails_closed() -> None:
    lim = Limiter(RedisLimitStore("redis://127.0.0.1:1/0", timeout=0.2), key_prefix="x:",
                  price_of=lambda provider, model: PRICE)
    with pytest.raises(LimiterUnavailable):
        await lim.reserve(route_rule(calls=1), CALLER, chat(), route_max_tokens=None)
    await lim.aclose()


@pytest.mark.parametrize("excess", [0, 5])
async def test_overshoot_never_exceeds_the_excess_over_reservations(store: Any, prefix: str, excess: int) -> None:
    """Random interleavings of reserve and settle. Invariant after every step:
    counter ≤ cap + Σ over settled calls of max(0, used − reserved); with honest reservations
    (excess 0) the counter never passes the cap at all."""
    rng = random.Random(1234 + excess)
    cap = 500
    lim = limiter(store, prefix)
    table = route_rule(tokens=cap, usd=Decimal("2"))
    checks = table.checks_for(CALLER, time.time())
    in_flight: list[Any] = []
    over_tokens = over_usd = admitted = 0
    for _ in range(400):
        if in_flight and rng.random() < 0.5:
            reservation = in_flight.pop(rng.randrange(len(in_flight)))
            # Real usage: anything up to the reservation, plus up to `excess` (a vendor over-reporting).
            out = rng.randint(0, 20 + excess)
            used = Usage(input_tokens=2, output_tokens=out)
            over_tokens += max(0, 2 + out - reservation.tokens)
            over_usd += max(0, rules.cost_micros(PRICE, 2, out) - reservation.usd_micros)
            await lim.settle(reservation, used)
        else:
            try:
                in_flight.append(await lim.reserve(table, CALLER, chat(), route_max_tokens=None))
                admitted += 1
            except LimitExceeded:
                pass
        await lim.store.drain()
        (_, tokens, usd), = lim.counters(checks)
        assert tokens <= cap + over_tokens
        assert usd <= 2_000_000 + over_usd
    assert admitted > 20
    if excess == 0:
        assert over_tokens == 0 and over_usd == 0

"""Retries, backoff, Retry-After, timeouts, weighted splits and fallbacks, against the fake upstream."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from providers.base import (
    ChatMessage,
    ChatRequest,
    GatewayError,
    RouteType,
    Secrets,
    Target,
    UpstreamError,
    UpstreamTimeout,
)
from providers.client import UpstreamClient
from providers.registry import get_provider
from routes.serving.dispatch import Defaults, Dispatcher, backoff_delay, plan
from routes.serving.snapshot import RouteEntry, Snapshot
from tests.fake_upstream.fixtures import fake_upstream, fake_upstream_server
from tests.fake_upstream.server import FakeUpstream

__all__ = ["fake_upstream", "fake_upstream_server"]

CHAT = ChatRequest([ChatMessage("user", "hi")])


def entry(name: str, fake: FakeUpstream | None = None, *, model: str = "gpt-4o-mini",
          key: str = FakeUpstream.OPENAI_KEY, route_type: RouteType = RouteType.CHAT, **kwargs: Any) -> RouteEntry:
    if fake is None:
        target = Target("mock", f"mock-{name}")
    else:
        target = Target("openai", model, {"openai_api_base": fake.openai_base}, Secrets({"openai_api_key": key}))
    return RouteEntry(id=hash(name) % 10_000, name=name, route_type=route_type, provider_name=target.provider,
                      provider=get_provider(target.provider), model=target.model, enabled=kwargs.pop("enabled", True),
                      max_candidates=5, targets={"production": target}, no_credential_target=target, **kwargs)


def snapshot(*entries: RouteEntry) -> Snapshot:
    return Snapshot(version=1, routes={e.name: e for e in entries})


@pytest.fixture
async def dispatcher() -> AsyncIterator[tuple[Dispatcher, list[float]]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async with UpstreamClient() as client:
        yield Dispatcher(client=client, defaults=Defaults(connect=2, read=1, total=1, stream_total=5),
                         rng=random.Random(7), sleep=sleep), slept


async def test_5xx_and_429_are_retried_with_backoff_then_succeed(fake_upstream: FakeUpstream, dispatcher) -> None:
    d, slept = dispatcher
    route = entry("r", fake_upstream, max_retries=3)
    fake_upstream.add_fault("500")
    fake_upstream.add_fault("429-2")
    response, served = await d.call(snapshot(route), route, "production", CHAT)
    assert response.choices[0].message.content.startswith("Fake answer")  # type: ignore[union-attr]
    assert len(fake_upstream.requests) == 3 and served.route is route
    assert slept[0] <= 0.2 and slept[1] == 2.0  # full jitter under the first cap, then the vendor's Retry-After


async def test_retries_are_bounded_per_route(fake_upstream: FakeUpstream, dispatcher) -> None:
    d, slept = dispatcher
    route = entry("r", fake_upstream, max_retries=1)
    fake_upstream.add_fault("503", times=5)
    with pytest.raises(UpstreamError) as caught:
        await d.call(snapshot(route), route, "production", CHAT)
    assert caught.value.code == "UPSTREAM_ERROR" and len(fake_upstream.requests) == 2 and len(slept) == 1


async def test_a_retry_after_beyond_the_cap_moves_on_instead_of_waiting(fake_upstream: FakeUpstream,
                                                                       dispatcher) -> None:
    d, slept = dispatcher
    backup = entry("backup")
    route = entry("r", fake_upstream, max_retries=3, fallbacks=("backup",))
    fake_upstream.add_fault("429-60")
    response, served = await d.call(snapshot(route, backup), route, "production", CHAT)
    assert served.route is backup and slept == [] and response.model == "mock-backup"


async def test_timeouts_fail_over_without_retrying(fake_upstream: FakeUpstream, dispatcher) -> None:
    d, _ = dispatcher
    backup = entry("backup")
    route = entry("r", fake_upstream, max_retries=3, total_timeout=0.3, fallbacks=("backup",))
    fake_upstream.add_fault("sleep-2")
    _, served = await d.call(snapshot(route, backup), route, "production", CHAT)
    assert served.route is backup and len(fake_upstream.requests) == 1
    alone = entry("alone", fake_upstream, max_retries=3, total_timeout=0.3)
    fake_upstream.add_fault("sleep-2")
    with pytest.raises(UpstreamTimeout):
        await d.call(snapshot(alone), alone, "production", CHAT)


async def test_a_rejected_credential_fails_over_but_a_bad_request_does_not(fake_upstream: FakeUpstream,
                                                                          dispatcher) -> None:
    d, slept = dispatcher
    backup = entry("backup")
    wrong = entry("r", fake_upstream, key="sk-wrong-key-123456", fallbacks=("backup",))
    _, served = await d.call(snapshot(wrong, backup), wrong, "production", CHAT)
    assert served.route is backup and slept == []
    route = entry("r2", fake_upstream, fallbacks=("backup",))
    fake_upstream.add_fault("400")
    with pytest.raises(GatewayError) as caught:  # the caller's mistake: not failed over
        await d.call(snapshot(route, backup), route, "production", CHAT)
    assert caught.value.status == 400


async def test_fallbacks_are_tried_in_order_and_skip_disabled_or_other_types(fake_upstream: FakeUpstream,
                                                                            dispatcher) -> None:
    d, _ = dispatcher
    off = entry("off", enabled=False)
    emb = entry("emb", route_type=RouteType.EMBEDDINGS)
    second = entry("second", fake_upstream, max_retries=0)
    third = entry("third")
    route = entry("r", fake_upstream, max_retries=0, fallbacks=("off", "emb", "second", "missing", "third"))
    assert [e.name for e in plan(snapshot(route, off, emb, second, third), route, random.Random(1))] == [
        "r", "second", "third"]
    fake_upstream.add_fault("500", times=2)
    _, served = await d.call(snapshot(route, off, emb, second, third), route, "production", CHAT)
    assert served.route is third


def test_weighted_split_spreads_traffic_by_weight() -> None:
    a, b = entry("a"), entry("b")
    route = entry("r", split_weight=50, splits=(("a", 30), ("b", 20)))
    snap = snapshot(route, a, b)
    rng = random.Random(42)
    counts = Counter(plan(snap, route, rng)[0].name for _ in range(10_000))
    assert abs(counts["r"] / 10_000 - 0.5) < 0.03
    assert abs(counts["a"] / 10_000 - 0.3) < 0.03
    assert abs(counts["b"] / 10_000 - 0.2) < 0.03


def test_backoff_grows_exponentially_with_full_jitter() -> None:
    rng = random.Random(3)
    error = UpstreamError("boom")
    for attempt in range(6):
        delays = [backoff_delay(attempt, error, rng) for _ in range(200)]
        assert all(d is not None and 0 <= d <= min(4.0, 0.2 * 2**attempt) for d in delays)
    assert backoff_delay(0, UpstreamTimeout("slow"), rng) is None


async def test_streams_fail_over_before_the_first_chunk(fake_upstream: FakeUpstream, dispatcher) -> None:
    d, _ = dispatcher
    backup = entry("backup")
    route = entry("r", fake_upstream, max_retries=1, fallbacks=("backup",))
    fake_upstream.add_fault("500", times=2)
    (first, rest), served = await d.open_stream(snapshot(route, backup), route, "production", CHAT)
    assert served.route is backup and first is not None
    text = "".join(dl.text for c in [first] + [c async for c in rest] for dl in c.deltas)
    assert text.startswith("This is a mock answer")


async def test_a_stream_that_started_is_never_retried(fake_upstream: FakeUpstream, dispatcher) -> None:
    d, _ = dispatcher
    route = entry("r", fake_upstream, max_retries=3)
    fake_upstream.add_fault("stream-cut")
    (first, rest), _ = await d.open_stream(snapshot(route), route, "production", CHAT)
    assert first is not None
    with pytest.raises(UpstreamError):
        async for _ in rest:
            pass
    assert len(fake_upstream.requests) == 1


@pytest.mark.django_db
def test_the_snapshot_carries_each_route_s_resilience_settings(make_route) -> None:
    from routes import services
    from routes.models import RouteSplit
    from routes.serving.snapshot import snapshot_load

    backup = make_route(name="backup")
    other = make_route(name="other")
    route = make_route(name="main", max_retries=4, timeouts=services.RouteTimeouts(connect=1.5, read=7, total=30))
    services.route_fallbacks_set(route=route, fallbacks=[backup, other])
    RouteSplit.objects.create(route=route, target=other, weight=25)
    loaded = snapshot_load(1).routes["main"]
    assert (loaded.connect_timeout, loaded.read_timeout, loaded.total_timeout, loaded.max_retries) == (1.5, 7, 30, 4)
    assert loaded.fallbacks == ("backup", "other") and loaded.splits == (("other", 25),)
    with pytest.raises(services.InvalidRequest):
        services.route_fallbacks_set(route=route, fallbacks=[route])

"""The drain on a real Redis: batches committed then acknowledged, at-least-once delivery counted once.

Faults: a worker that died mid-batch (read, never acknowledged) and one that died after the commit but
before the acknowledgement; a duplicate event; an undecodable entry; a database refusing a batch;
Redis restarted between record and drain; Redis down while recording.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson
import pytest
import redis
from asgiref.sync import sync_to_async
from django.db import connections

from usage.drain import MAX_DELIVERIES, DrainIncomplete, consumers_forget_idle, usage_stream_drain
from usage.events import UsageEventData
from usage.models import UsageEvent
from usage.recorder import RedisStreamRecorder
from usage.services import usage_events_write
from usage.stream import BATCH_FIELD, EVENT_FIELD, StreamNames, group_ensure

pytestmark = pytest.mark.django_db


def xadd(client: redis.Redis, names: StreamNames, events: list[UsageEventData]) -> None:
    for e in events:
        client.xadd(names.stream, {EVENT_FIELD: e.to_wire()})


def drain(client: redis.Redis, names: StreamNames, consumer: str = "worker-b", **kwargs: Any) -> Any:
    return usage_stream_drain(client=client, names=names, consumer=consumer, **{"claim_idle_ms": 50, **kwargs})


def stored(events: list[UsageEventData]) -> int:
    return UsageEvent.objects.filter(request_id__in=[e.request_id for e in events]).count()


def test_a_batch_is_committed_then_acknowledged_and_deleted(rclient, names, make_event) -> None:
    events = [make_event(input_tokens=i, output_tokens=2 * i, total_tokens=3 * i) for i in range(25)]
    xadd(rclient, names, events)
    result = drain(rclient, names, batch_size=10)
    assert (result.written, result.batches, result.pending_left) == (25, 3, 0)
    assert stored(events) == 25
    assert rclient.xlen(names.stream) == 0  # acknowledged entries are deleted: the stream stays small
    row = UsageEvent.objects.get(request_id=events[7].request_id)
    assert (row.input_tokens, row.output_tokens, row.total_tokens) == (7, 14, 21)


def test_worker_killed_mid_batch_its_entries_are_delivered_again_and_counted_once(rclient, names, make_event) -> None:
    events = [make_event() for _ in range(12)]
    xadd(rclient, names, events)
    group_ensure(rclient, names)
    # Worker A reads a batch and dies before committing: its entries stay pending, unacknowledged.
    taken = rclient.xreadgroup(names.group, "worker-a", {names.stream: ">"}, count=5)
    assert len(taken[0][1]) == 5 and stored(events) == 0
    # A drain right away leaves A's entries alone (A might still be working on them)...
    first = drain(rclient, names, claim_idle_ms=60_000)
    assert first.written == 7 and first.pending_left == 5 and stored(events) == 7
    # ...and claims them once they have been idle long enough.
    time.sleep(0.1)
    second = drain(rclient, names)
    assert (second.claimed, second.written, second.pending_left) == (5, 5, 0)
    assert stored(events) == 12 and UsageEvent.objects.count() == 12
    assert rclient.xlen(names.stream) == 0


def test_worker_killed_after_commit_before_ack_counts_once(rclient, names, make_event) -> None:
    events = [make_event() for _ in range(6)]
    xadd(rclient, names, events)
    group_ensure(rclient, names)
    taken = rclient.xreadgroup(names.group, "worker-a", {names.stream: ">"}, count=6)
    usage_events_write(events=[UsageEventData.from_wire(f[EVENT_FIELD]) for _, f in taken[0][1]])
    # ...and worker A dies here, between the commit and XACK.
    time.sleep(0.1)
    result = drain(rclient, names)
    assert result.claimed == 6 and result.pending_left == 0
    assert stored(events) == 6 and UsageEvent.objects.count() == 6


def test_a_duplicate_event_is_counted_once(rclient, names, make_event) -> None:
    event = make_event(input_tokens=100, total_tokens=105)
    xadd(rclient, names, [event, event])
    drain(rclient, names)
    xadd(rclient, names, [event])  # and once more, in a later batch
    drain(rclient, names)
    assert UsageEvent.objects.filter(request_id=event.request_id).count() == 1
    assert UsageEvent.objects.get(request_id=event.request_id).input_tokens == 100


def test_an_undecodable_entry_goes_to_the_dead_letter_stream_and_blocks_nothing(rclient, names, make_event) -> None:
    good = make_event()
    rclient.xadd(names.stream, {EVENT_FIELD: b"{not json"})
    rclient.xadd(names.stream, {b"other": b"x"})
    xadd(rclient, names, [good])
    result = drain(rclient, names)
    assert (result.written, result.dead_lettered, result.pending_left) == (1, 2, 0)
    dead = rclient.xrange(names.dead)
    assert len(dead) == 2 and b"not JSON" in dead[0][1][b"reason"]
    assert dead[0][1][b"e"] == b"{not json"  # kept whole for a person to look at
    assert stored([good]) == 1


def test_a_batch_entry_with_one_bad_event_stores_the_others(rclient, names, make_event) -> None:
    good = [make_event() for _ in range(3)]
    items = [good[0].wire_dict(), {"request_id": "no-time"}, good[1].wire_dict(), good[2].wire_dict()]
    rclient.xadd(names.stream, {BATCH_FIELD: orjson.dumps(items)})
    result = drain(rclient, names)
    assert (result.written, result.dead_lettered, result.pending_left) == (3, 1, 0)
    assert stored(good) == 3 and rclient.xlen(names.stream) == 0
    [(_, dead)] = rclient.xrange(names.dead)
    assert b"no-time" in dead[b"e"] and b"created_at" in dead[b"reason"]


def test_a_database_outage_leaves_the_batch_pending_for_the_retry(rclient, names, make_event, monkeypatch) -> None:
    events = [make_event() for _ in range(4)]
    xadd(rclient, names, events)

    def refuse(**kwargs: Any) -> int:
        raise RuntimeError("database is down")

    monkeypatch.setattr("usage.drain.usage_events_write", refuse)
    with pytest.raises(DrainIncomplete):
        drain(rclient, names)
    assert stored(events) == 0 and rclient.xpending(names.stream, names.group)["pending"] == 4
    monkeypatch.undo()
    result = drain(rclient, names, consumer="worker-b")  # the retry: its own pending entries first
    assert result.written == 4 and result.pending_left == 0 and stored(events) == 4


def test_an_event_the_database_keeps_refusing_is_dead_lettered_after_five_deliveries(rclient, names, make_event,
                                                                                      monkeypatch) -> None:
    good = [make_event(), make_event()]
    poison = make_event()
    xadd(rclient, names, [good[0], poison, good[1]])

    def picky(*, events: list[UsageEventData]) -> int:
        if any(e.request_id == poison.request_id for e in events):
            raise ValueError("value too long for type character varying(64)")
        return usage_events_write(events=events)

    monkeypatch.setattr("usage.drain.usage_events_write", picky)
    for _ in range(MAX_DELIVERIES - 1):  # the retries: the others are stored, the refused one waits
        with pytest.raises(DrainIncomplete):
            drain(rclient, names)
    assert stored(good) == 2 and rclient.xpending(names.stream, names.group)["pending"] == 1
    result = drain(rclient, names)
    assert (result.dead_lettered, result.pending_left) == (1, 0)
    assert stored([poison]) == 0 and rclient.xlen(names.stream) == 0
    [(_, dead)] = rclient.xrange(names.dead)
    assert poison.request_id.encode() in dead[b"e"] and b"too long" in dead[b"reason"]


def test_prices_travel_as_decimals_and_unpriced_events_are_priced_by_the_drain(rclient, names, make_event) -> None:
    priced = make_event(provider="openai", model="gpt-x", input_price_per_mtok=Decimal("0.15"),
                        output_price_per_mtok=Decimal("0.6"), cost_usd=Decimal("0.0000034500"))
    unpriced = make_event(provider="mock", model="mock-1")  # cost_usd None: not priced at record time
    xadd(rclient, names, [priced, unpriced])
    drain(rclient, names)
    row = UsageEvent.objects.get(request_id=priced.request_id)
    assert row.cost_usd == Decimal("0.0000034500") and row.input_price_per_mtok == Decimal("0.15")
    mock = UsageEvent.objects.get(request_id=unpriced.request_id)
    assert mock.cost_usd == 0 and mock.input_price_per_mtok == 0  # the mock provider is free, and priced


def test_idle_consumers_of_dead_workers_are_forgotten(rclient, names, make_event) -> None:
    xadd(rclient, names, [make_event()])
    group_ensure(rclient, names)
    rclient.xreadgroup(names.group, "dead-worker", {names.stream: ">"}, count=1)
    time.sleep(0.1)
    drain(rclient, names)
    assert consumers_forget_idle(client=rclient, names=names, idle_ms=10, keep="worker-b") == 1
    assert [c["name"] for c in rclient.xinfo_consumers(names.stream, names.group)] == [b"worker-b"]


# ---- the recorder side


async def until_written(recorder: RedisStreamRecorder) -> None:
    for _ in range(200):  # 10 s
        if not recorder.pending:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{recorder.pending} events still buffered")


def run_sync_now(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return sync_to_async(fn, thread_sensitive=True)(*args, **kwargs)


@pytest.fixture
async def close_db_after() -> Any:
    """The async tests use the database from sync_to_async's thread: close its connection after them."""
    yield
    await sync_to_async(connections.close_all)()


@pytest.mark.usefixtures("close_db_after")
@pytest.mark.django_db(transaction=True)
async def test_redis_restarted_between_record_and_drain_loses_nothing(private_redis, make_event) -> None:
    names = StreamNames(stream="gateway:usage:events", group="usage-drain")
    recorder = RedisStreamRecorder(run_sync=run_sync_now, redis_url=private_redis.url, names=names,
                                   request_drain=lambda: None)
    recorder.start()
    events = [make_event() for _ in range(20)]
    for e in events:
        recorder.record(e)
    await recorder.flush()
    assert recorder.pending == 0
    private_redis.restart()  # clean restart: the append-only file brings the stream back
    client = redis.Redis.from_url(private_redis.url)
    try:
        result = await sync_to_async(drain)(client, names)
    finally:
        client.close()
    await recorder.stop()
    assert result.written == 20
    assert await sync_to_async(stored)(events) == 20


@pytest.mark.usefixtures("close_db_after")
@pytest.mark.django_db(transaction=True)
async def test_redis_down_while_recording_keeps_events_then_appends_them(private_redis, make_event) -> None:
    names = StreamNames(stream="gateway:usage:events", group="usage-drain")
    recorder = RedisStreamRecorder(run_sync=run_sync_now, redis_url=private_redis.url, names=names,
                                   flush_seconds=0.05, fallback_after_seconds=60, request_drain=lambda: None)
    recorder.start()
    private_redis.stop()
    events = [make_event() for _ in range(5)]
    for e in events:
        recorder.record(e)  # never blocks, never raises
    await asyncio.sleep(0.3)
    assert recorder.pending == 5  # kept in memory, retried
    private_redis.start()
    await until_written(recorder)
    await recorder.stop()
    client = redis.Redis.from_url(private_redis.url)
    try:
        entries = client.xrange(names.stream)
        appended = [e["request_id"] for _, fields in entries for e in orjson.loads(fields[BATCH_FIELD])]
        assert sorted(appended) == sorted(e.request_id for e in events)
    finally:
        client.close()


@pytest.mark.usefixtures("close_db_after")
@pytest.mark.django_db(transaction=True)
async def test_redis_down_for_long_writes_to_the_database_directly(private_redis, make_event) -> None:
    names = StreamNames(stream="gateway:usage:events", group="usage-drain")
    recorder = RedisStreamRecorder(run_sync=run_sync_now, redis_url=private_redis.url, names=names,
                                   flush_seconds=0.05, fallback_after_seconds=0.2, request_drain=lambda: None)
    recorder.start()
    private_redis.stop()
    events = [make_event() for _ in range(7)]
    for e in events:
        recorder.record(e)
    await until_written(recorder)
    await recorder.stop()
    assert await sync_to_async(stored)(events) == 7

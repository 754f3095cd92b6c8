"""Draining the usage stream into the database: at-least-once delivery made exactly-once by request id.

One pass (`usage_stream_drain`), in this order, each step in batches:
1. this consumer's own pending entries (read before, not acknowledged: a failed earlier attempt);
2. entries other consumers read but did not acknowledge for `claim_idle_ms` (XAUTOCLAIM): a worker
   killed mid-batch leaves its batch pending, and this is where it is delivered again;
3. new entries (XREADGROUP `>`), waiting out the current nudge interval before giving up (see below).
Each batch is inserted in one transaction (`usage_events_write`, which skips request ids already
stored) and acknowledged + deleted only after that commit. Dying anywhere in between leaves the batch
pending, so it is delivered again and, being idempotent, counted once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis
from django.db import connection

from .events import UsageEventData
from .services import usage_events_write
from .stream import BATCH_FIELD, EVENT_FIELD, StreamNames, entries_ack, entries_dead_letter, group_ensure

logger = logging.getLogger(__name__)

# An entry the database refuses on its own (not a database outage) goes to the dead-letter stream
# after this many deliveries.
MAX_DELIVERIES = 5


class DrainIncomplete(Exception):
    """Some entries stay pending (the database refused them for now): retry the drain later."""


@dataclass
class DrainResult:
    written: int = 0
    claimed: int = 0
    dead_lettered: int = 0
    batches: int = 0
    pending_left: int = 0
    errors: list[str] = field(default_factory=list)


Decoded = list[tuple[Any, UsageEventData]]  # (entry id, event)
Refused = list[tuple[Any, bytes | None, str]]  # (entry id, raw event, reason)


def _decode(entries: list[tuple[Any, dict[Any, Any]]]) -> tuple[Decoded, Refused]:
    """The events of each entry (a `b` batch or one `e` event); undecodable ones, one by one."""
    good: Decoded = []
    bad: Refused = []
    for entry_id, fields in entries:
        batch, single = fields.get(BATCH_FIELD), fields.get(EVENT_FIELD)
        if batch is not None:
            try:
                items = orjson.loads(batch)
            except orjson.JSONDecodeError as exc:
                bad.append((entry_id, batch, f"not JSON: {exc}"))
                continue
            if not isinstance(items, list):
                bad.append((entry_id, batch, "a batch entry must be a JSON array"))
                continue
            for item in items:
                try:
                    good.append((entry_id, UsageEventData.from_wire_dict(item)))
                except ValueError as exc:
                    bad.append((entry_id, orjson.dumps(item), str(exc)))
        elif single is not None:
            try:
                good.append((entry_id, UsageEventData.from_wire(single)))
            except ValueError as exc:
                bad.append((entry_id, single, str(exc)))
        else:
            bad.append((entry_id, None, "no event field"))
    return good, bad


def _database_answers() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        return False


def _deliveries(client: redis.Redis, names: StreamNames, entry_id: Any) -> int:
    info = client.xpending_range(names.stream, names.group, min=entry_id, max=entry_id, count=1)
    return int(info[0]["times_delivered"]) if info else 0


def _process(client: redis.Redis, names: StreamNames, entries: list[tuple[Any, dict[Any, Any]]],
             result: DrainResult) -> None:
    """Store one read's events, then acknowledge their entries (all of them, or none on failure)."""
    # An entry deleted from the stream while still pending comes back without fields: nothing to
    # store, but it must leave the pending list or it would be read again for ever.
    gone = [i for i, f in entries if not f]
    if gone:
        client.xack(names.stream, names.group, *gone)
    entries = [(i, f) for i, f in entries if f]
    if not entries:
        return
    good, bad = _decode(entries)
    ids = list(dict.fromkeys(i for i, _ in entries))
    if good:
        try:
            usage_events_write(events=[e for _, e in good])
        except Exception as exc:
            logger.exception("writing a batch of %d usage events failed; trying them one by one", len(good))
            result.errors.append(repr(exc))
            _process_one_by_one(client, names, good, bad, ids, result)
            return
    if bad:
        logger.error("usage stream: %d undecodable events copied to %s", len(bad), names.dead)
        entries_dead_letter(client, names, bad)
        result.dead_lettered += len(bad)
    entries_ack(client, names, ids)  # only after the commit
    result.written += len(good)
    result.batches += 1


def _process_one_by_one(client: redis.Redis, names: StreamNames, good: Decoded, bad: Refused, ids: list[Any],
                        result: DrainResult) -> None:
    refused: list[tuple[Any, UsageEventData, str]] = []
    written = 0
    for entry_id, event in good:
        try:
            usage_events_write(events=[event])
            written += 1
        except Exception as exc:
            refused.append((entry_id, event, repr(exc)))
    result.written += written
    if refused and not written and not _database_answers():
        # The database is down, not the events at fault: leave them all pending for the retry.
        raise DrainIncomplete(f"the database refused {len(refused)} usage events: {refused[0][2]}")
    # An event the database keeps refusing on its own goes to the dead-letter stream after
    # MAX_DELIVERIES deliveries of its entry; until then its entry stays pending (the written events
    # of that entry are skipped as duplicates next time).
    waiting = {i for i, _, _ in refused if _deliveries(client, names, i) < MAX_DELIVERIES}
    dead: Refused = [*bad, *((i, e.to_wire(), reason) for i, e, reason in refused if i not in waiting)]
    entries_dead_letter(client, names, dead)
    result.dead_lettered += len(dead)
    entries_ack(client, names, [i for i in ids if i not in waiting])
    if waiting:
        raise DrainIncomplete(f"{len(waiting)} usage stream entries refused for now; they stay pending")


def usage_stream_drain(*, client: redis.Redis, names: StreamNames, consumer: str, batch_size: int = 500,
                       claim_idle_ms: int = 30_000, max_seconds: float = 20.0) -> DrainResult:
    """Move what is in the stream into UsageEvent (see the module doc); returns what it did.

    Stops after `max_seconds` (the next drain continues). Raises DrainIncomplete when entries had to
    stay pending, and lets Redis and database errors through: nothing is acknowledged that is not
    committed, so the caller just retries.
    """
    result = DrainResult()
    deadline = time.monotonic() + max_seconds
    group_ensure(client, names)

    # 1. Our own pending entries (this process read them and failed before acknowledging).
    while time.monotonic() < deadline:
        response: Any = client.xreadgroup(names.group, consumer, {names.stream: "0"}, count=batch_size)
        entries = response[0][1] if response else []
        if not entries:
            break
        _process(client, names, entries, result)

    # 2. Entries of consumers that read them and went quiet (a killed worker).
    start: Any = "0-0"
    while time.monotonic() < deadline:
        next_start, entries, *_ = client.xautoclaim(
            names.stream, names.group, consumer, min_idle_time=claim_idle_ms, start_id=start, count=batch_size
        )
        if entries:
            result.claimed += len([e for e in entries if e[1]])
            logger.info("usage stream: claimed %d entries left pending by another consumer", len(entries))
            _process(client, names, entries, result)
        if next_start in (b"0-0", "0-0"):
            break
        start = next_start

    # 3. New entries.
    while time.monotonic() < deadline:
        response = client.xreadgroup(names.group, consumer, {names.stream: ">"}, count=batch_size)
        entries = response[0][1] if response else []
        if not entries:
            # Serving processes ask for a drain once per nudge interval: one that appended after this
            # drain was requested did not ask again. Wait out the interval so its events are not left
            # behind until the next request.
            wait_ms = int(client.pttl(names.nudge))
            if wait_ms <= 0:
                break
            response = client.xreadgroup(names.group, consumer, {names.stream: ">"}, count=batch_size,
                                         block=wait_ms + 50)
            entries = response[0][1] if response else []
            if not entries:
                break
        _process(client, names, entries, result)

    result.pending_left = int(client.xpending(names.stream, names.group)["pending"])
    return result


def consumers_forget_idle(*, client: redis.Redis, names: StreamNames, idle_ms: int = 3_600_000,
                          keep: str = "") -> int:
    """Remove consumers (dead worker processes) with nothing pending, idle longer than `idle_ms`."""
    removed = 0
    try:
        consumers = client.xinfo_consumers(names.stream, names.group)
    except redis.ResponseError:
        return 0
    for info in consumers:
        name = info["name"].decode() if isinstance(info["name"], bytes) else str(info["name"])
        if name != keep and int(info["pending"]) == 0 and int(info["idle"]) > idle_ms:
            client.xgroup_delconsumer(names.stream, names.group, name)
            removed += 1
    return removed

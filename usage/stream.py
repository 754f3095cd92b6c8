"""The usage stream in Redis: names, and the few commands both sides use.

Serving processes XADD what they recorded since their last append as one entry (field `b`: a JSON
array of events, at most MAX_EVENTS_PER_ENTRY; one-event entries with field `e` are read too) and never
trim the stream. The drain reads it through one consumer group and deletes an entry only after
acknowledging it, which it does only once its events are committed to the database. Events that
cannot be decoded are copied to the dead-letter stream `<stream>:dead` (with the reason) instead of
being dropped.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings

EVENT_FIELD = b"e"  # one event
BATCH_FIELD = b"b"  # a JSON array of events
MAX_EVENTS_PER_ENTRY = 200


@dataclass(frozen=True, slots=True)
class StreamNames:
    stream: str
    group: str

    @property
    def dead(self) -> str:
        return f"{self.stream}:dead"

    @property
    def nudge(self) -> str:
        """Set (NX, short TTL) by whoever last asked for a drain: one drain request per interval."""
        return f"{self.stream}:nudge"

    @property
    def followup(self) -> str:
        return f"{self.stream}:followup"

    def keys(self) -> list[str]:
        return [self.stream, self.dead, self.nudge, self.followup]


def stream_names() -> StreamNames:
    cfg = settings.GATEWAY
    return StreamNames(stream=cfg["USAGE_STREAM"], group=cfg["USAGE_STREAM_GROUP"])


def consumer_name() -> str:
    """This process's consumer name in the group: one per worker process, so a dead one's entries are
    recognisably its own (and claimable by the others once idle)."""
    return f"{socket.gethostname()}-{os.getpid()}"


def redis_client(url: str | None = None) -> redis.Redis:
    return redis.Redis.from_url(url or settings.REDIS_URL, socket_timeout=10, socket_connect_timeout=5)


def group_ensure(client: redis.Redis, names: StreamNames) -> None:
    """Create the consumer group (and the stream) if missing; from the start, so nothing is skipped.

    Also after a Redis restart without persistence, where the group is gone with the stream.
    """
    try:
        client.xgroup_create(names.stream, names.group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def entries_ack(client: redis.Redis, names: StreamNames, ids: list[Any]) -> None:
    """Acknowledge and delete entries in one MULTI (the stream holds only what is not yet committed)."""
    if not ids:
        return
    with client.pipeline(transaction=True) as pipe:
        pipe.xack(names.stream, names.group, *ids)
        pipe.xdel(names.stream, *ids)
        pipe.execute()


def entries_dead_letter(client: redis.Redis, names: StreamNames, items: list[tuple[Any, bytes | None, str]]) -> None:
    """Copy undecodable or refused events to the dead-letter stream (kept whole, with the reason).

    The caller acknowledges their entries afterwards (a crash in between copies them twice, never zero
    times)."""
    if not items:
        return
    with client.pipeline(transaction=False) as pipe:
        for entry_id, raw, reason in items:
            pipe.xadd(names.dead, {"id": entry_id, "e": raw or b"", "reason": reason[:500]})
        pipe.execute()

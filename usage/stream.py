"""The usage stream in Redis: names, and the few commands both sides use.

Serving processes XADD one entry per call (field `e`: the event's wire JSON) and never trim the
stream; the drain reads it through one consumer group and deletes an entry only after acknowledging
it, which it does only once the event is committed to the database. Entries that cannot be decoded
are moved to the dead-letter stream `<stream>:dead` (with the reason) instead of being dropped.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings

EVENT_FIELD = b"e"


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


def entries_dead_letter(client: redis.Redis, names: StreamNames, entries: list[tuple[Any, bytes | None, str]]) -> None:
    """Move undecodable or refused entries to the dead-letter stream (kept whole, with the reason)."""
    if not entries:
        return
    with client.pipeline(transaction=True) as pipe:
        for entry_id, raw, reason in entries:
            pipe.xadd(names.dead, {"id": entry_id, "e": raw or b"", "reason": reason[:500]})
        ids = [entry_id for entry_id, _, _ in entries]
        pipe.xack(names.stream, names.group, *ids)
        pipe.xdel(names.stream, *ids)
        pipe.execute()

"""Celery tasks of the usage pipeline: adapters over drain.py and rollup.py, retried with backoff.

- `usage.drain_stream`: requested by serving processes right after they append events (at most once
  per second cluster-wide), by beat every GATEWAY_USAGE_DRAIN_SECONDS as a safety net, and by each
  worker once it is ready (to claim what a killed predecessor left pending).
- `usage.rollup` (beat, every GATEWAY_USAGE_ROLLUP_MINUTES) and `usage.prune` (beat, daily).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.db import DatabaseError
from redis import RedisError

from .drain import DrainIncomplete, consumers_forget_idle, usage_stream_drain
from .rollup import usage_events_prune, usage_rollup
from .stream import consumer_name, redis_client, stream_names

logger = logging.getLogger(__name__)


@shared_task(name="usage.drain_stream", bind=True, autoretry_for=(DrainIncomplete, DatabaseError, RedisError, OSError),
             retry_backoff=1, retry_backoff_max=60, retry_jitter=True, max_retries=8, ignore_result=True)
def drain_usage_stream(self: Any) -> dict[str, int]:
    if not settings.REDIS_URL:
        return {"written": 0}
    cfg = settings.GATEWAY
    names = stream_names()
    client = redis_client()
    try:
        me = consumer_name()
        result = usage_stream_drain(
            client=client, names=names, consumer=me, batch_size=cfg["USAGE_DRAIN_BATCH"],
            claim_idle_ms=int(cfg["USAGE_CLAIM_IDLE_SECONDS"] * 1000), max_seconds=cfg["USAGE_DRAIN_MAX_SECONDS"],
        )
        consumers_forget_idle(client=client, names=names, keep=me)
        if result.pending_left or client.xlen(names.stream):
            # Entries left: pending ones of a consumer that may have died become claimable after the
            # idle time; new ones arrived during the run. One follow-up drain, not one per caller.
            claim_seconds = float(cfg["USAGE_CLAIM_IDLE_SECONDS"])
            if client.set(names.followup, b"1", nx=True, px=max(1, int(claim_seconds * 1000))):
                self.apply_async(countdown=claim_seconds if result.pending_left else 0, expires=claim_seconds + 300)
    finally:
        client.close()
    if result.written or result.dead_lettered:
        logger.info("usage drain: %d events written (%d claimed from other consumers), %d dead-lettered",
                    result.written, result.claimed, result.dead_lettered)
    return {"written": result.written, "claimed": result.claimed, "dead_lettered": result.dead_lettered,
            "pending_left": result.pending_left}


@shared_task(name="usage.rollup", autoretry_for=(DatabaseError,), retry_backoff=5, retry_backoff_max=300,
             max_retries=10, ignore_result=True)
def rollup_usage() -> int:
    return usage_rollup()


@shared_task(name="usage.prune", autoretry_for=(DatabaseError,), retry_backoff=5, max_retries=10,
             ignore_result=True)
def prune_usage_events() -> int:
    usage_rollup()  # fold first: only folded events may go
    return usage_events_prune(days=settings.GATEWAY["USAGE_RETENTION_DAYS"])


@worker_ready.connect
def _drain_when_ready(sender: Any = None, **kwargs: Any) -> None:
    """A fresh worker drains at once, and again once a killed predecessor's entries are claimable."""
    if not settings.REDIS_URL:
        return
    try:
        drain_usage_stream.apply_async(expires=300)
        claim_seconds = float(settings.GATEWAY["USAGE_CLAIM_IDLE_SECONDS"])
        drain_usage_stream.apply_async(countdown=claim_seconds + 0.5, expires=claim_seconds + 300)
    except Exception:
        logger.warning("could not queue the start-up usage drain", exc_info=True)

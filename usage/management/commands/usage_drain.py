"""`manage.py usage_drain`: move what is in the usage stream into the database now (what the worker does)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from usage.drain import usage_stream_drain
from usage.stream import consumer_name, redis_client, stream_names


class Command(BaseCommand):
    help = "Drain the Redis usage stream into UsageEvent once (needs REDIS_URL)."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.REDIS_URL:
            raise CommandError("REDIS_URL is not set: without Redis, events are written to the database directly.")
        cfg = settings.GATEWAY
        client = redis_client()
        try:
            result = usage_stream_drain(
                client=client, names=stream_names(), consumer=consumer_name(), batch_size=cfg["USAGE_DRAIN_BATCH"],
                claim_idle_ms=int(cfg["USAGE_CLAIM_IDLE_SECONDS"] * 1000), max_seconds=3600,
            )
        finally:
            client.close()
        self.stdout.write(f"{result.written} events written ({result.claimed} claimed from other consumers), "
                          f"{result.dead_lettered} dead-lettered, {result.pending_left} still pending")

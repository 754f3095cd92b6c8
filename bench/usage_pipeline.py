"""Measure the usage pipeline's parts on this machine: the hot-path cost of `record()`, appending to the
Redis stream, draining into the database, rolling up, and a 30-day report.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/usage_bench REDIS_URL=redis://127.0.0.1:6379/13 \\
        .venv/bin/python bench/usage_pipeline.py [--events 20000]

DATABASE_URL must name a scratch database (it is migrated, and usage rows are written and deleted).
Only the script's own Redis keys are created and deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gatewaysite.settings")

import django

django.setup()

import redis  # noqa: E402
from asgiref.sync import sync_to_async  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from usage import pricing  # noqa: E402
from usage.drain import usage_stream_drain  # noqa: E402
from usage.events import UsageEventData  # noqa: E402
from usage.models import ModelPrice, UsageDaily, UsageEvent, UsageHourly  # noqa: E402
from usage.recorder import RedisStreamRecorder, UsageRecorder  # noqa: E402
from usage.reports import usage_report  # noqa: E402
from usage.rollup import usage_rollup  # noqa: E402
from usage.stream import StreamNames  # noqa: E402


def events(n: int) -> list[UsageEventData]:
    now = datetime.now(UTC)
    return [
        UsageEventData(
            request_id=uuid.uuid4().hex, created_at=now - timedelta(minutes=i % (30 * 24 * 60)), api_family="openai",
            status_code=200 if i % 20 else 502, route_id=i % 7, route_name=f"route-{i % 7}", provider="openai",
            model=("gpt-4o-mini", "gpt-4o")[i % 2], consumer_id=i % 50, consumer_name=f"c{i % 50}", team_id=i % 5,
            team_name=f"team-{i % 5}", environment="production", input_tokens=500 + i % 300, output_tokens=120,
            total_tokens=620 + i % 300,
        )
        for i in range(n)
    ]


def line(label: str, value: str) -> None:
    print(f"{label:<58} {value}")


async def measure_record(n: int) -> None:
    async def no_sync(*args: Any, **kwargs: Any) -> None:
        return None

    recorder = UsageRecorder(run_sync=no_sync)
    batch = events(n)
    started = time.process_time()
    for e in batch:
        recorder.record(e)
    elapsed = time.process_time() - started
    line("record() on the hot path (price lookup + buffer append)", f"{elapsed / n * 1e6:.2f} µs CPU/event")


async def measure_append(n: int, names: StreamNames) -> None:
    recorder = RedisStreamRecorder(run_sync=sync_to_async(lambda *a, **k: None), redis_url=settings.REDIS_URL,
                                   names=names, request_drain=lambda: None)
    batch = events(n)
    started, cpu = time.perf_counter(), time.process_time()
    for chunk in range(0, n, 100):  # what a busy process buffers between two loop turns
        for e in batch[chunk:chunk + 100]:
            recorder.record(e)
        await recorder.flush()
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    await recorder.stop()
    line("record() + append to the Redis stream, batches of 100",
         f"{cpu / n * 1e6:.1f} µs CPU/event in the serving process; {n / elapsed:,.0f} events/s one after another")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    if not settings.REDIS_URL:
        sys.exit("set REDIS_URL")
    n = args.events
    call_command("migrate", verbosity=0)
    UsageEvent.objects.all().delete()
    UsageHourly.objects.all().delete()
    UsageDaily.objects.all().delete()
    if not ModelPrice.objects.filter(provider="openai", model="gpt-4o").exists():
        ModelPrice.objects.create(provider="openai", model="gpt-4o", input_per_mtok=Decimal("2.5"),
                                  output_per_mtok=Decimal("10"), effective_from=datetime(2020, 1, 1, tzinfo=UTC))
    pricing.prices_load()
    names = StreamNames(stream=f"bench:usage:{uuid.uuid4().hex[:8]}", group="usage-drain")
    client = redis.Redis.from_url(settings.REDIS_URL)
    print(f"{n:,} events; database {connection.vendor}; Redis {settings.REDIS_URL}")
    try:
        asyncio.run(measure_record(n))
        asyncio.run(measure_append(n, names))
        started = time.perf_counter()
        result = usage_stream_drain(client=client, names=names, consumer="bench", batch_size=500, max_seconds=600)
        elapsed = time.perf_counter() - started
        assert result.written == n, result
        line("drain into the database (batches of 500: insert, commit, ack)", f"{n / elapsed:,.0f} events/s")
        started = time.perf_counter()
        folded = usage_rollup()
        elapsed = time.perf_counter() - started
        line("roll-up into hourly + daily aggregates", f"{folded / elapsed:,.0f} events/s "
             f"({UsageHourly.objects.count():,} hourly, {UsageDaily.objects.count():,} daily rows)")
        today = datetime.now(UTC).date()
        started = time.perf_counter()
        report = usage_report(start=today - timedelta(days=29), end=today, group_by=("team", "day"))
        elapsed = time.perf_counter() - started
        line("30-day report by team and day (from the aggregates)", f"{elapsed * 1000:.1f} ms, {len(report.rows)} rows")
        assert report.totals["calls"] == n
    finally:
        client.delete(*names.keys())
        client.close()
        UsageEvent.objects.all().delete()
        UsageHourly.objects.all().delete()
        UsageDaily.objects.all().delete()


if __name__ == "__main__":
    main()

"""Roll-ups (hourly and daily aggregates) and retention of raw events.

The roll-up folds every event not yet folded (`rolled_up=False`, whatever its `created_at`: a late
event lands in its own, possibly old, bucket) into both aggregate tables, adding to the bucket's
existing row, and marks the events folded in the same transaction. Runs are serialized by a row lock
on RollupState. So a re-run finds nothing to fold and changes nothing, and a report that adds the
aggregates to the not-yet-folded events always equals the sum of the raw events.

`usage_rollup_rebuild` recomputes a period's aggregates from its raw events (same totals, by
construction); retention (`usage_events_prune`) deletes only raw events already folded, so the
aggregates outlive them.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from .models import RollupState, UsageAggregate, UsageDaily, UsageEvent, UsageHourly

logger = logging.getLogger(__name__)

DIMENSIONS = ("team_id", "team_name", "consumer_id", "consumer_name", "route_id", "route_name", "provider", "model",
              "environment", "status_code")
_SUMS = ("calls", "errors", "input_tokens", "output_tokens", "total_tokens", "estimated_calls", "unpriced_calls",
         "latency_ms_total", "cost_usd")
_EVENT_FIELDS = (*DIMENSIONS, "id", "created_at", "input_tokens", "output_tokens", "total_tokens",
                 "tokens_estimated", "input_price_per_mtok", "latency_ms", "cost_usd")
CHUNK = 5000


def dims_hash(dims: Iterable[Any]) -> str:
    return hashlib.sha1("\x1f".join("" if v is None else str(v) for v in dims).encode()).hexdigest()


def hour_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def day_start(moment: datetime | date) -> datetime:
    day = moment.astimezone(UTC).date() if isinstance(moment, datetime) else moment
    return datetime.combine(day, time.min, tzinfo=UTC)


@dataclass
class _Totals:
    calls: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    estimated_calls: int = 0
    unpriced_calls: int = 0
    latency_ms_total: float = 0.0
    cost_usd: Decimal = Decimal("0")

    def add_event(self, e: dict[str, Any]) -> None:
        self.calls += 1
        self.errors += e["status_code"] >= 400
        self.input_tokens += e["input_tokens"]
        self.output_tokens += e["output_tokens"]
        self.total_tokens += e["total_tokens"]
        self.estimated_calls += bool(e["tokens_estimated"])
        self.unpriced_calls += e["input_price_per_mtok"] is None and e["status_code"] < 400
        self.latency_ms_total += e["latency_ms"] or 0.0
        self.cost_usd += e["cost_usd"] or Decimal("0")


def _fold(model: type[UsageAggregate], groups: dict[tuple[datetime, tuple[Any, ...]], _Totals]) -> None:
    """Add `groups` into the aggregate table (existing rows updated, missing ones created)."""
    keys = {(bucket, dims_hash(dims)): (bucket, dims, totals) for (bucket, dims), totals in groups.items()}
    existing: dict[tuple[datetime, str], UsageAggregate] = {}
    hashes = {h for _, h in keys}
    buckets = {b for b, _ in keys}
    manager = model._default_manager
    for found in manager.filter(bucket_start__in=buckets, dims_hash__in=hashes):
        existing[(found.bucket_start, found.dims_hash)] = found
    to_create: list[UsageAggregate] = []
    to_update: list[UsageAggregate] = []
    for key, (bucket, dims, totals) in keys.items():
        row = existing.get(key)
        if row is None:
            new = model(bucket_start=bucket, dims_hash=key[1], **dict(zip(DIMENSIONS, dims, strict=True)))
            for name in _SUMS:
                setattr(new, name, getattr(totals, name))
            to_create.append(new)
        else:
            for name in _SUMS:
                setattr(row, name, getattr(row, name) + getattr(totals, name))
            to_update.append(row)
    manager.bulk_create(to_create, batch_size=500)
    manager.bulk_update(to_update, list(_SUMS), batch_size=500)


def _fold_chunk(limit: int) -> int:
    """Fold up to `limit` unfolded events (the caller holds the roll-up lock in a transaction)."""
    events = list(UsageEvent.objects.filter(rolled_up=False).order_by("id").values(*_EVENT_FIELDS)[:limit])
    if not events:
        return 0
    hourly: dict[tuple[datetime, tuple[Any, ...]], _Totals] = {}
    daily: dict[tuple[datetime, tuple[Any, ...]], _Totals] = {}
    for e in events:
        dims = tuple(e[d] for d in DIMENSIONS)
        hourly.setdefault((hour_start(e["created_at"]), dims), _Totals()).add_event(e)
        daily.setdefault((day_start(e["created_at"]), dims), _Totals()).add_event(e)
    _fold(UsageHourly, hourly)
    _fold(UsageDaily, daily)
    ids = [e["id"] for e in events]
    for i in range(0, len(ids), 1000):
        UsageEvent.objects.filter(id__in=ids[i:i + 1000]).update(rolled_up=True)
    return len(events)


def _locked_state() -> RollupState:
    RollupState.objects.get_or_create(pk=1)
    return RollupState.objects.select_for_update().get(pk=1)


def usage_rollup(*, chunk: int = CHUNK) -> int:
    """Fold every event not yet folded into the hourly and daily aggregates; returns how many.

    Idempotent: a second run with no new events folds nothing. Each chunk commits on its own, so a
    crash loses no work and double-counts nothing (events and their aggregates commit together).
    """
    folded = 0
    while True:
        with transaction.atomic():
            state = _locked_state()
            n = _fold_chunk(chunk)
            if n:
                state.events_folded += n
            state.last_run_at = timezone.now()
            state.save(update_fields=["events_folded", "last_run_at"])
        folded += n
        if n < chunk:
            break
    if folded:
        logger.info("usage roll-up folded %d events", folded)
    return folded


def usage_rollup_rebuild(*, start: date, end: date) -> int:
    """Recompute the aggregates of the UTC days start..end (inclusive) from their raw events.

    Only meaningful while the raw events are retained: the caller checks the retention window.
    Returns the number of events folded.
    """
    lo, hi = day_start(start), day_start(end + timedelta(days=1))
    with transaction.atomic():
        _locked_state()
        UsageHourly.objects.filter(bucket_start__gte=lo, bucket_start__lt=hi).delete()
        UsageDaily.objects.filter(bucket_start__gte=lo, bucket_start__lt=hi).delete()
        UsageEvent.objects.filter(created_at__gte=lo, created_at__lt=hi).update(rolled_up=False)
    return usage_rollup()


def retention_cutoff(*, days: int, now: datetime | None = None) -> datetime:
    return day_start((now or timezone.now()) - timedelta(days=days))


def usage_events_prune(*, days: int, now: datetime | None = None, chunk: int = 10_000) -> int:
    """Delete raw events older than `days` days (whole UTC days) that are already rolled up."""
    if days <= 0:
        return 0
    cutoff = retention_cutoff(days=days, now=now)
    deleted = 0
    while True:
        old = UsageEvent.objects.filter(created_at__lt=cutoff, rolled_up=True)
        ids = list(old.values_list("id", flat=True)[:chunk])
        if not ids:
            break
        deleted += UsageEvent.objects.filter(id__in=ids).delete()[0]
    if deleted:
        logger.info("usage retention: deleted %d raw events older than %s", deleted, cutoff)
    return deleted

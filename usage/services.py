"""What the serving half and the workers may call in usage: writing usage events, and reserving and
settling limits.

Draining the usage stream lives in `drain.py`, roll-ups and retention in `rollup.py`, reports in
`reports.py`, prices in `pricing.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from django.db import transaction
from django.db.models import CharField

from providers.base import StdRequest, Usage

from . import pricing
from .events import UsageEventData
from .limits import services as limits_services
from .limits.enforce import RELEASE, Limiter, LimiterUnavailable, LimitExceeded, ModelNotPriced, Reservation
from .limits.rules import Caller, LimitsTable, Priced
from .limits.stores import PROCESS_MEMORY_STORE, RedisLimitStore
from .models import UsageEvent

# Re-exported for the serving half, which reaches usage only through this module.
__all__ = [
    "RELEASE", "Caller", "LimitExceeded", "Limiter", "LimiterUnavailable", "LimitsTable", "ModelNotPriced",
    "Reservation", "limiter_build", "limits_reserve", "limits_settle", "limits_table_load", "usage_event_row",
    "usage_events_write",
]

logger = logging.getLogger(__name__)

_MAX_LENGTHS: dict[str, int] = {
    f.name: int(f.max_length) for f in UsageEvent._meta.concrete_fields if isinstance(f, CharField) and f.max_length
}
PRICE_QUANTUM = Decimal("0.000001")  # the price columns' decimal places
_COLUMNS = frozenset(f.name for f in UsageEvent._meta.concrete_fields) - {"id", "ingested_at", "rolled_up"}


def usage_event_row(event: UsageEventData) -> UsageEvent:
    """The model row for an event (unpriced events are priced here; over-long names are cut, not refused)."""
    if event.cost_usd is None:
        pricing.event_price(event, pricing.price_table_ensure())
    values: dict[str, Any] = {k: v for k, v in event.as_dict().items() if k in _COLUMNS}
    # Exactly what the columns hold (SQLite would otherwise keep extra digits that sums then show).
    values["cost_usd"] = Decimal(values["cost_usd"]).quantize(pricing.COST_QUANTUM, rounding=ROUND_HALF_EVEN)
    for name in ("input_price_per_mtok", "output_price_per_mtok"):
        if values.get(name) is not None:
            values[name] = Decimal(values[name]).quantize(PRICE_QUANTUM, rounding=ROUND_HALF_EVEN)
    for name, limit in _MAX_LENGTHS.items():
        value = values.get(name)
        if isinstance(value, str) and len(value) > limit:
            values[name] = value[:limit]
    return UsageEvent(**values)


def usage_events_write(*, events: Sequence[UsageEventData]) -> int:
    """Insert a batch of usage events in one transaction and stamp the keys' last use.

    Idempotent by request id: an event already stored is skipped, so a redelivered batch counts once.
    Returns the number of events handed in (inserted or already present). When it returns, the batch
    is committed.
    """
    if not events:
        return 0
    from routes.models import ApiKey  # usage depends on routes' models, never on their services

    if any(e.cost_usd is None for e in events):
        pricing.prices_refresh_if_changed()
    rows = [usage_event_row(e) for e in events]
    with transaction.atomic():
        UsageEvent.objects.bulk_create(rows, ignore_conflicts=True, batch_size=500)
    last_used: dict[int, datetime] = {}
    for e in events:
        if e.api_key_id is not None and (e.api_key_id not in last_used or e.created_at > last_used[e.api_key_id]):
            last_used[e.api_key_id] = e.created_at
    for key_id, when in last_used.items():
        # One autocommitted statement each (no lock held across tables), and a queryset update
        # fires no signals, so stamping last use never reloads the serving snapshots.
        ApiKey.objects.filter(pk=key_id).exclude(last_used_at__gt=when).update(last_used_at=when)
    return len(rows)


# ---- limits (the serving half's only way in: build the limiter, load the table, reserve, settle)


def limiter_build() -> Limiter:
    """This process's limiter: counters in Redis when REDIS_URL is set, else in this process."""
    from django.conf import settings

    cfg = settings.GATEWAY
    store = (RedisLimitStore(settings.REDIS_URL, timeout=cfg["LIMITS_REDIS_TIMEOUT_SECONDS"])
             if settings.REDIS_URL else PROCESS_MEMORY_STORE)
    return Limiter(
        store,
        key_prefix=cfg["LIMITS_KEY_PREFIX"],
        price_of=_price_now,
        fail_open=cfg["LIMITS_FAIL_MODE"] == "open",
        default_max_tokens=cfg["DEFAULT_MAX_TOKENS"],
        expiry_slack_seconds=int(cfg.get("STREAM_TIMEOUT_SECONDS", 600) + cfg["UPSTREAM_TIMEOUT_SECONDS"]) + 60,
    )


def _price_now(provider: str, model: str) -> Priced | None:
    return pricing.price_lookup(pricing.price_table(), provider=provider, model=model, at=datetime.now(UTC))


def limits_table_load() -> LimitsTable:
    """Every limit, for the serving snapshot (sync ORM; also makes sure prices are loaded)."""
    pricing.price_table_ensure()
    return limits_services.limits_table_load()


async def limits_reserve(*, limiter: Limiter, table: LimitsTable, caller: Caller, request: StdRequest,
                         route_max_tokens: int | None) -> Reservation | None:
    """Check and charge every limit that applies, before the upstream call (one Redis round trip).

    Raises LimitExceeded (429, with X-RateLimit-* headers), LimiterUnavailable (503, fail closed) or
    ModelNotPriced (503). May set the request's max_tokens (the cap the reservation counts on).
    """
    return await limiter.reserve(table, caller, request, route_max_tokens=route_max_tokens)


async def limits_settle(*, limiter: Limiter, reservation: Reservation | None, usage: Usage | None) -> None:
    """Reconcile a reservation: the real usage after a call, `RELEASE` after a failed one, None to keep
    it whole (a client abort whose usage is unknown). Safe to call twice; the second call does nothing."""
    await limiter.settle(reservation, usage)

"""Prices and costs: plain functions over an in-process price table (no database query per call).

    table = price_table()                                     # this process's current table
    price = price_lookup(table, provider="openai", model="gpt-4o-mini", at=now)  # Price | None
    cost = cost_usd(price, input_tokens=1200, output_tokens=300)                  # Decimal

The table is every ModelPrice row, loaded once (`prices_load`, sync: run it off the event loop) and
refreshed by `prices_refresh_if_changed`, a cheap fingerprint query (row count and last update) that
reloads only on change; the serving recorder calls it every GATEWAY_PRICE_REFRESH_SECONDS.
Money is Decimal end to end; a cost is quantized to 1e-10 USD (ROUND_HALF_EVEN) once per event,
so any sum of stored event costs is exact.

The `mock` provider costs 0 unless a ModelPrice row prices it. Any other model without a price also
costs 0 but is recorded as unpriced (its event has no price), so reports can show what is missing
instead of silently logging $0.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal

from .events import UsageEventData

logger = logging.getLogger(__name__)

COST_QUANTUM = Decimal("0.0000000001")  # 1e-10 USD, the decimal_places of the cost columns
PER_TOKENS = Decimal(1_000_000)
FREE_PROVIDERS = frozenset({"mock"})
_SEPARATORS = ("-", ":", "@")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M input / output tokens; `id` is the ModelPrice row (None for a built-in free price)."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    effective_from: datetime = _EPOCH
    id: int | None = None


FREE = Price(Decimal("0"), Decimal("0"))


@dataclass(frozen=True)
class PriceTable:
    """All known prices by (provider, model), each list sorted by effective_from."""

    entries: dict[tuple[str, str], tuple[Price, ...]] = field(default_factory=dict)
    fingerprint: tuple[int, datetime | None] = (0, None)
    loaded: bool = False
    _starts: dict[tuple[str, str], list[datetime]] = field(default_factory=dict, repr=False, compare=False)
    _models_by_provider: dict[str, list[str]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def build(cls, rows: Iterable[tuple[str, str, Price]], *, fingerprint: tuple[int, datetime | None] = (0, None),
              loaded: bool = True) -> PriceTable:
        grouped: dict[tuple[str, str], list[Price]] = {}
        for provider, model, price in rows:
            grouped.setdefault((provider, model), []).append(price)
        entries = {k: tuple(sorted(v, key=lambda p: p.effective_from)) for k, v in grouped.items()}
        starts = {k: [p.effective_from for p in v] for k, v in entries.items()}
        by_provider: dict[str, list[str]] = {}
        for provider, model in entries:
            by_provider.setdefault(provider, []).append(model)
        for models in by_provider.values():
            models.sort(key=len, reverse=True)  # longest prefix first
        return cls(entries=entries, fingerprint=fingerprint, loaded=loaded, _starts=starts,
                   _models_by_provider=by_provider)

    def _at(self, key: tuple[str, str], at: datetime) -> Price | None:
        index = bisect.bisect_right(self._starts[key], at) - 1
        return self.entries[key][index] if index >= 0 else None

    def _priced_model(self, provider: str, model: str) -> str | None:
        if (provider, model) in self.entries:
            return model
        for candidate in self._models_by_provider.get(provider, ()):
            if model.startswith(candidate) and model[len(candidate)] in _SEPARATORS:
                return candidate
        return None

    def lookup(self, *, provider: str, model: str, at: datetime) -> Price | None:
        name = self._priced_model(provider, model)
        if name is None and "." in model and provider == "bedrock":
            # Bedrock cross-region inference profiles prefix the model id: "us.anthropic.claude-...".
            region, _, rest = model.partition(".")
            if len(region) <= 4:
                name = self._priced_model(provider, rest)
        price = self._at((provider, name), at) if name is not None else None
        if price is None and provider in FREE_PROVIDERS:
            return FREE
        return price


_lock = threading.Lock()
_current = PriceTable()


def price_table() -> PriceTable:
    """This process's price table (empty, `loaded=False`, until `prices_load` has run)."""
    return _current


def price_table_set(table: PriceTable) -> None:
    global _current
    with _lock:
        _current = table


def price_lookup(table: PriceTable, *, provider: str, model: str, at: datetime) -> Price | None:
    """The price of `provider`/`model` in effect at `at`, or None when none is known."""
    return table.lookup(provider=provider, model=model, at=at)


def cost_usd(price: Price | None, *, input_tokens: int, output_tokens: int) -> Decimal:
    """What the tokens cost at `price` (Decimal("0") without a price), quantized to 1e-10 USD."""
    if price is None:
        return Decimal("0")
    raw = (price.input_per_mtok * input_tokens + price.output_per_mtok * output_tokens) / PER_TOKENS
    return raw.quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN)


def event_price(event: UsageEventData, table: PriceTable | None = None) -> None:
    """Stamp the event with the price in effect at its time and its cost (in place)."""
    price = price_lookup(table or _current, provider=event.provider, model=event.model, at=event.created_at)
    event.price_id = price.id if price is not None else None
    event.input_price_per_mtok = price.input_per_mtok if price is not None else None
    event.output_price_per_mtok = price.output_per_mtok if price is not None else None
    event.cost_usd = cost_usd(price, input_tokens=event.input_tokens, output_tokens=event.output_tokens)


# ---- loading from the database (sync: call from a thread, a worker or a command)


def _fingerprint() -> tuple[int, datetime | None]:
    from django.db.models import Count, Max

    from .models import ModelPrice

    agg = ModelPrice.objects.aggregate(n=Count("id"), last=Max("updated_at"))
    return int(agg["n"] or 0), agg["last"]


def prices_load() -> PriceTable:
    """Read every ModelPrice into a new table and make it this process's current one."""
    from .models import ModelPrice

    fingerprint = _fingerprint()
    rows = [
        (p.provider, p.model, Price(p.input_per_mtok, p.output_per_mtok, p.effective_from, p.pk))
        for p in ModelPrice.objects.all()
    ]
    table = PriceTable.build(rows, fingerprint=fingerprint)
    price_table_set(table)
    return table


def prices_refresh_if_changed() -> bool:
    """Reload the table if ModelPrice changed since it was loaded (one aggregate query); True if reloaded."""
    if _current.loaded and _fingerprint() == _current.fingerprint:
        return False
    prices_load()
    return True


def price_table_ensure() -> PriceTable:
    """The current table, loading it first if this process has none yet."""
    return _current if _current.loaded else prices_load()

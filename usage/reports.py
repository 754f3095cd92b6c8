"""Cost reports: usage per team / consumer / route / model / day over a period of UTC days.

A report reads the daily aggregates plus the raw events not yet rolled up, in one consistent
snapshot, so its totals always equal the sum of the raw events (and outlive them after retention).
Rows carry the names at the time of the calls: a deleted or renamed route is reported under its old
name.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, F, Q, QuerySet, Sum
from django.db.models.functions import TruncDate

from .models import UsageDaily, UsageEvent
from .pricing import COST_QUANTUM
from .rollup import day_start

# group name → (output field, source column) pairs
GROUPS: dict[str, tuple[tuple[str, str], ...]] = {
    "team": (("team_id", "team_id"), ("team", "team_name")),
    "consumer": (("consumer_id", "consumer_id"), ("consumer", "consumer_name"), ("consumer_team", "team_name")),
    "route": (("route_id", "route_id"), ("route", "route_name")),
    "model": (("provider", "provider"), ("model", "model")),
    "day": (("day", "day"),),
}
METRICS = ("calls", "errors", "input_tokens", "output_tokens", "total_tokens", "cost_usd")
MAX_DAYS = 3660


class ReportError(ValueError):
    """Bad report parameters (the message says which)."""


@dataclass(frozen=True)
class ReportFilters:
    team_id: int | None = None
    route: str | None = None
    consumer: str | None = None
    consumer_id: int | None = None
    environment: str | None = None

    def q(self) -> Q:
        q = Q()
        if self.team_id is not None:
            q &= Q(team_id=self.team_id)
        if self.route:
            q &= Q(route_name=self.route)
        if self.consumer:
            q &= Q(consumer_name=self.consumer)
        if self.consumer_id is not None:
            q &= Q(consumer_id=self.consumer_id)
        if self.environment:
            q &= Q(environment=self.environment)
        return q


@dataclass
class Report:
    start: date
    end: date
    group_by: tuple[str, ...]
    rows: list[dict[str, Any]] = field(default_factory=list)
    totals: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The API shape: {"rows": [...], "totals": {...}} with cost_usd as a decimal string."""
        return {"rows": [_jsonable(r) for r in self.rows], "totals": _jsonable(self.totals)}

    def columns(self) -> list[str]:
        return [out for g in self.group_by for out, _ in GROUPS[g]] + list(METRICS)

    def as_csv(self) -> str:
        """One header line, one line per row (no totals line: a sum of the rows is the total)."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        columns = self.columns()
        writer.writerow(columns)
        for row in self.rows:
            values = _jsonable(row)
            writer.writerow(["" if values.get(c) is None else values[c] for c in columns])
        return buffer.getvalue()


def money(value: Decimal) -> str:
    return f"{value.quantize(COST_QUANTUM):f}"


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    if isinstance(out.get("cost_usd"), Decimal):
        out["cost_usd"] = money(out["cost_usd"])
    if isinstance(out.get("day"), date):
        out["day"] = out["day"].isoformat()
    return out


def parse_group_by(raw: str | Sequence[str] | None) -> tuple[str, ...]:
    parts = [p.strip() for p in (raw.split(",") if isinstance(raw, str) else (raw or ["team"])) if p.strip()]
    unknown = [p for p in parts if p not in GROUPS]
    if unknown or not parts:
        raise ReportError(f"group_by must be a comma-separated list of {', '.join(GROUPS)}; got {raw!r}.")
    return tuple(dict.fromkeys(parts))


def parse_day(raw: str | None, *, name: str, default: date) -> date:
    """A YYYY-MM-DD date (ReportError otherwise); `default` when empty."""
    if raw in (None, ""):
        return default
    text = str(raw)
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise ReportError(f"{name} must be a date as YYYY-MM-DD; got {text!r}.")


def period_check(start: date, end: date) -> None:
    if end < start:
        raise ReportError(f"end ({end}) is before start ({start}).")
    if (end - start).days > MAX_DAYS:
        raise ReportError(f"a report covers at most {MAX_DAYS} days.")


@contextmanager
def _snapshot() -> Iterator[None]:
    """One transaction whose reads see one state: a roll-up committing meanwhile can neither hide
    events (folded after the aggregates were read) nor count them twice."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if connection.vendor == "postgresql" and outermost:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        # Inside a caller's transaction, that transaction's snapshot rules; on SQLite the transaction
        # itself is the snapshot.
        yield


def _columns(group_by: tuple[str, ...]) -> list[str]:
    return list(dict.fromkeys(col for g in group_by for _, col in GROUPS[g]))


def _aggregate_rows(lo: datetime, hi: datetime, cols: list[str], q: Q) -> QuerySet[Any]:
    qs: QuerySet[Any] = UsageDaily.objects.filter(q, bucket_start__gte=lo, bucket_start__lt=hi)
    if "day" in cols:
        qs = qs.annotate(day=TruncDate("bucket_start"))
    return qs.values(*cols).annotate(
        s_calls=Sum("calls"), s_errors=Sum("errors"), s_input_tokens=Sum("input_tokens"),
        s_output_tokens=Sum("output_tokens"), s_total_tokens=Sum("total_tokens"), s_cost_usd=Sum("cost_usd"),
    ).order_by()


def _raw_rows(lo: datetime, hi: datetime, cols: list[str], q: Q) -> QuerySet[Any]:
    qs: QuerySet[Any] = UsageEvent.objects.filter(q, rolled_up=False, created_at__gte=lo, created_at__lt=hi)
    if "day" in cols:
        qs = qs.annotate(day=TruncDate("created_at"))
    return qs.values(*cols).annotate(
        s_calls=Count("id"), s_errors=Count("id", filter=Q(status_code__gte=400)),
        s_input_tokens=Sum("input_tokens"), s_output_tokens=Sum("output_tokens"),
        s_total_tokens=Sum("total_tokens"), s_cost_usd=Sum("cost_usd"),
    ).order_by()


def _empty_totals() -> dict[str, Any]:
    return {"calls": 0, "errors": 0, "input_tokens": 0, "output_tokens": 0, "total_tokens": 0,
            "cost_usd": Decimal("0")}


def _add(into: dict[str, Any], source: dict[str, Any]) -> None:
    for m in METRICS:
        value = source[f"s_{m}"]
        if value is None:
            continue
        into[m] += Decimal(value) if m == "cost_usd" else int(value)


def usage_report(*, start: date, end: date, group_by: Sequence[str] = ("team",),
                 filters: ReportFilters | None = None) -> Report:
    """Usage of the UTC days start..end (both included) grouped by `group_by`, with totals.

    Rows are ordered by day (when grouped by day), then by cost, largest first.
    """
    groups = parse_group_by(list(group_by))
    period_check(start, end)
    filters = filters or ReportFilters()
    lo, hi = day_start(start), day_start(end + timedelta(days=1))
    cols = _columns(groups)
    merged: dict[tuple[Any, ...], dict[str, Any]] = {}
    totals = _empty_totals()
    with _snapshot():
        sources = [_aggregate_rows(lo, hi, cols, filters.q()), _raw_rows(lo, hi, cols, filters.q())]
        for qs in sources:
            for source in qs:
                key = tuple(source[c] for c in cols)
                row = merged.get(key)
                if row is None:
                    row = merged[key] = {out: source[col] for g in groups for out, col in GROUPS[g]}
                    row.update(_empty_totals())
                _add(row, source)
                _add(totals, source)
    rows = list(merged.values())
    for row in rows:
        row["cost_usd"] = row["cost_usd"].quantize(COST_QUANTUM)
    totals["cost_usd"] = totals["cost_usd"].quantize(COST_QUANTUM)
    rows.sort(key=lambda r: (-r["cost_usd"], -r["total_tokens"], tuple(str(r[c]) for c in r if c not in METRICS)))
    if "day" in groups:
        rows.sort(key=lambda r: r["day"])
    return Report(start=start, end=end, group_by=groups, rows=rows, totals=totals)


def usage_daily_series(*, start: date, end: date, filters: ReportFilters | None = None) -> list[dict[str, Any]]:
    """One row per day start..end (days without calls included, with zeros): for charts."""
    report = usage_report(start=start, end=end, group_by=("day",), filters=filters)
    by_day = {row["day"]: row for row in report.rows}
    out = []
    day = start
    while day <= end:
        out.append(by_day.get(day) or {"day": day, **_empty_totals()})
        day += timedelta(days=1)
    return out


def raw_totals(*, filters: ReportFilters | None = None, start: date | None = None,
               end: date | None = None) -> dict[str, Any]:
    """Totals straight from the raw events (for checks: a report over retained data equals this)."""
    qs = UsageEvent.objects.filter((filters or ReportFilters()).q())
    if start is not None:
        qs = qs.filter(created_at__gte=day_start(start))
    if end is not None:
        qs = qs.filter(created_at__lt=day_start(end + timedelta(days=1)))
    agg = qs.aggregate(
        s_calls=Count("id"), s_errors=Count("id", filter=Q(status_code__gte=400)),
        s_input_tokens=Sum("input_tokens"), s_output_tokens=Sum("output_tokens"),
        s_total_tokens=Sum("total_tokens"), s_cost_usd=Sum(F("cost_usd")),
    )
    totals = _empty_totals()
    _add(totals, agg)
    totals["cost_usd"] = totals["cost_usd"].quantize(COST_QUANTUM)
    return totals

"""Writes and reads of limit configuration (ORM), and what the management API shows.

The serving half never calls these on a warm path: it gets a `LimitsTable` from the snapshot loader.
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import transaction

from providers.base import InvalidRequest

from . import rules
from .models import Limit
from .rules import Caller, LimitsTable, Rule, micros_to_usd

__all__ = ["Caller"]  # the management API builds one for limits_status
from .stores import PROCESS_MEMORY_STORE, LimitStore, LimitStoreUnavailable, RedisLimitStore

SCOPE_OF_KEY = {"route": Limit.Scope.ROUTE, "user": Limit.Scope.ROUTE_PER_CONSUMER, "team": Limit.Scope.ROUTE_PER_TEAM}
PERIOD_ORDER = {p: i for i, p in enumerate(rules.PERIODS)}


def _rule(limit: Limit) -> Rule:
    return Rule(
        limit_id=limit.pk, scope=limit.scope, period=limit.period, calls=limit.calls, tokens=limit.tokens,
        usd=limit.usd, route_id=limit.route_id, team_id=limit.team_id, consumer_id=limit.consumer_id,
    )


def limits_table_build(limits: Iterable[Limit]) -> LimitsTable:
    by_route: dict[int, list[Rule]] = defaultdict(list)
    on_route: dict[tuple[int, int], list[Rule]] = defaultdict(list)
    by_team: dict[int, list[Rule]] = defaultdict(list)
    by_consumer: dict[int, list[Rule]] = defaultdict(list)
    default: list[Rule] = []
    for limit in limits:
        rule = _rule(limit)
        if limit.scope in Limit.ROUTE_SCOPES:
            by_route[limit.route_id or 0].append(rule)
        elif limit.scope == Limit.Scope.CONSUMER_ON_ROUTE:
            on_route[(limit.route_id or 0, limit.consumer_id or 0)].append(rule)
        elif limit.scope == Limit.Scope.TEAM:
            by_team[limit.team_id or 0].append(rule)
        elif limit.scope == Limit.Scope.CONSUMER:
            by_consumer[limit.consumer_id or 0].append(rule)
        else:
            default.append(rule)
    return LimitsTable(
        by_route={k: tuple(v) for k, v in by_route.items()},
        consumer_on_route={k: tuple(v) for k, v in on_route.items()},
        by_team={k: tuple(v) for k, v in by_team.items()},
        by_consumer={k: tuple(v) for k, v in by_consumer.items()},
        default_consumer=tuple(default),
    )


def limits_table_load() -> LimitsTable:
    """Every limit, indexed for the hot path (sync ORM: the snapshot loader runs it off the loop)."""
    return limits_table_build(Limit.objects.all())


# ---- the MLflow-shaped limits API


def _parse_count(entry: Mapping[str, Any], name: str) -> int | None:
    value = entry.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRequest(f"limits: '{name}' must be a whole number ≥ 0 (got {value!r}).")
    return value


def _parse_usd(entry: Mapping[str, Any]) -> Decimal | None:
    value = entry.get("usd")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidRequest(f"limits: 'usd' must be a decimal string such as \"12.50\" (got {value!r}).")
    try:
        usd = Decimal(str(value))
    except InvalidOperation:
        raise InvalidRequest(f"limits: 'usd' must be a decimal string such as \"12.50\" (got {value!r}).") from None
    exponent = usd.as_tuple().exponent
    if not usd.is_finite() or usd < 0 or usd >= Decimal("1e8") or (isinstance(exponent, int) and exponent < -6):
        raise InvalidRequest(f"limits: 'usd' must be from 0 to 99999999.999999, at most 6 decimals (got {value!r}).")
    return usd


def parse_route_limits(entries: Any) -> list[dict[str, Any]]:
    """Validate `[{key, renewal_period, calls, tokens, usd}]` (MLflow's Limit, extended)."""
    if not isinstance(entries, list):
        raise InvalidRequest("limits: a list of {key, renewal_period, calls, tokens, usd} is required.")
    parsed: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for entry in entries:
        if not isinstance(entry, dict):
            raise InvalidRequest("limits: each limit is an object {key, renewal_period, calls, tokens, usd}.")
        unknown = sorted(set(entry) - {"key", "renewal_period", "calls", "tokens", "usd"})
        if unknown:
            raise InvalidRequest(f"limits: unknown field(s) {', '.join(unknown)}.")
        key = entry.get("key") or "route"
        if key not in SCOPE_OF_KEY:
            raise InvalidRequest(f"limits: key must be 'route', 'user' or 'team' (got {key!r}).")
        period = entry.get("renewal_period") or "minute"
        if period not in rules.PERIODS:
            raise InvalidRequest(f"limits: renewal_period must be 'minute', 'day' or 'month' (got {period!r}).")
        calls, tokens, usd = _parse_count(entry, "calls"), _parse_count(entry, "tokens"), _parse_usd(entry)
        if calls is None and tokens is None and usd is None:
            raise InvalidRequest("limits: each limit sets at least one of calls, tokens or usd.")
        if (key, period) in seen:
            raise InvalidRequest(f"limits: two limits for key '{key}' per {period}; merge them into one.")
        seen.add((key, period))
        parsed.append({"scope": SCOPE_OF_KEY[key], "period": period, "calls": calls, "tokens": tokens, "usd": usd})
    return parsed


@transaction.atomic
def route_limits_set(*, route: Any, entries: Sequence[Mapping[str, Any]]) -> list[Limit]:
    """Replace the route's own limits (scopes route, user, team) with `entries` (parsed).

    Rows are updated in place where (scope, period) stays, so the audit log shows what changed.
    """
    existing = {(lim.scope, lim.period): lim for lim in Limit.objects.filter(route=route, scope__in=Limit.ROUTE_SCOPES)}
    kept: list[Limit] = []
    for entry in entries:
        limit = existing.pop((entry["scope"], entry["period"]), None) or Limit(
            route=route, scope=entry["scope"], period=entry["period"]
        )
        caps = (entry["calls"], entry["tokens"], entry["usd"])
        if limit.pk is None or (limit.calls, limit.tokens, limit.usd) != caps:
            limit.calls, limit.tokens, limit.usd = caps
            limit.save()
        kept.append(limit)
    for stale in existing.values():
        stale.delete()
    return kept


def _usd_str(usd: Decimal | None) -> str | None:
    return None if usd is None else f"{usd.normalize():f}"


def limit_entry(limit: Limit | Rule) -> dict[str, Any]:
    """MLflow's `{calls, renewal_period, key}` with our `tokens`, `usd` and `scope`."""
    return {
        "key": rules.SCOPE_KEY[limit.scope],
        "renewal_period": limit.period,
        "calls": limit.calls,
        "tokens": limit.tokens,
        "usd": _usd_str(limit.usd),
        "scope": limit.scope,
    }


def _sorted(limits: Iterable[Limit]) -> list[Limit]:
    order = {s: i for i, s in enumerate(Limit.Scope.values)}
    return sorted(limits, key=lambda lim: (PERIOD_ORDER[lim.period], order[lim.scope], lim.pk))


def split_for_mlflow(entries: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """MLflow's client parses `limits` as Limit(calls: int, ...): limits without calls go in `budgets`."""
    return {"limits": [e for e in entries if e["calls"] is not None],
            "budgets": [e for e in entries if e["calls"] is None]}


def route_limits_config(*, route: Any) -> dict[str, Any]:
    """What an admin sees: the route's own limits, and its consumer-on-route limits."""
    own = _sorted(Limit.objects.filter(route=route, scope__in=Limit.ROUTE_SCOPES))
    per_consumer = _sorted(Limit.objects.filter(route=route, scope=Limit.Scope.CONSUMER_ON_ROUTE)
                           .select_related("consumer__team"))
    return {
        "route": route.name,
        **split_for_mlflow([limit_entry(lim) for lim in own]),
        "consumer_limits": [limit_entry(lim) | {"consumer": str(lim.consumer)} for lim in per_consumer],
    }


def route_call_limit(limits: Iterable[Limit]) -> dict[str, Any] | None:
    """The route object's `limit` (MLflow's `{calls, renewal_period, key}`): its tightest-period calls limit."""
    with_calls = [lim for lim in _sorted(limits) if lim.scope in Limit.ROUTE_SCOPES and lim.calls is not None]
    if not with_calls:
        return None
    first = with_calls[0]
    return {"calls": first.calls, "renewal_period": first.period, "key": rules.SCOPE_KEY[first.scope]}


# ---- what a consumer sees: their limits with used, remaining and reset


@functools.cache
def _redis_store(url: str) -> RedisLimitStore:
    return RedisLimitStore(url, timeout=2.0)


def counter_store() -> LimitStore:
    """The store the serving half counts in, for reading (Redis, or this process's memory)."""
    url: str = settings.REDIS_URL
    return _redis_store(url) if url else PROCESS_MEMORY_STORE


def key_prefix() -> str:
    prefix: str = settings.GATEWAY["LIMITS_KEY_PREFIX"]
    return prefix


def limits_status(*, caller: Caller, now: float | None = None) -> dict[str, Any]:
    """Every limit that applies to `caller` on its route, with used, remaining and reset time."""
    now = time.time() if now is None else now
    table = limits_table_load()
    checks = {(c.subject, c.period): c for c in table.checks_for(caller, now)}
    ordered = list(checks.values())
    try:
        values = dict(zip(checks, counter_store().read([c.key(key_prefix()) for c in ordered]), strict=True))
        available = True
    except LimitStoreUnavailable:
        values, available = {}, False
    entries: list[dict[str, Any]] = []
    for rule in sorted(table.rules_for(caller), key=lambda r: (PERIOD_ORDER[r.period], r.scope)):
        subject, words = rules.subject_of(rule, caller)
        check = checks[(subject, rule.period)]
        entry = limit_entry(rule) | {"applies_to": words}
        if available:
            c, t, u = values[(subject, rule.period)]
            entry["used"] = {"calls": c, "tokens": t, "usd": _usd_str(micros_to_usd(u))}
            entry["remaining"] = {
                "calls": None if rule.calls is None else max(0, rule.calls - c),
                "tokens": None if rule.tokens is None else max(0, rule.tokens - t),
                "usd": None if rule.usd is None else _usd_str(max(Decimal(0), rule.usd - micros_to_usd(u))),
            }
        entry["reset_at"] = datetime.fromtimestamp(check.window_end, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        entry["resets_in_seconds"] = rules.seconds_until(check.window_end, now)
        entries.append(entry)
    return {"route": caller.route_name, **split_for_mlflow(entries), "counters_available": available}

"""The limits that apply to one call, as plain data (no Django): loaded into the serving snapshot.

A counter is identified by its subject (what it counts: a route, a consumer on a route, a team on a
route, a team, a consumer) and its window (a fixed UTC minute, day or calendar month). The counter
holds three numbers: calls, tokens and micro-USD. Limits at different scopes that count the same
subject in the same period share a counter (usage is usage); their caps are merged (the lowest wins).
"""

from __future__ import annotations

import calendar
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal
from typing import Protocol

MICROS_PER_USD = 1_000_000
NO_CAP = -1

PERIODS = ("minute", "day", "month")
_PERIOD_LETTER = {"minute": "m", "day": "d", "month": "M"}

ROUTE = "route"
ROUTE_PER_CONSUMER = "route_user"
ROUTE_PER_TEAM = "route_team"
CONSUMER_ON_ROUTE = "consumer_on_route"
TEAM = "team"
CONSUMER = "consumer"
DEFAULT_CONSUMER = "default_consumer"

# MLflow's Limit.key for each scope.
SCOPE_KEY = {
    ROUTE: "route", ROUTE_PER_CONSUMER: "user", ROUTE_PER_TEAM: "team", CONSUMER_ON_ROUTE: "user",
    TEAM: "team", CONSUMER: "user", DEFAULT_CONSUMER: "user",
}


def window(period: str, now: float) -> tuple[int, int]:
    """The fixed UTC window holding `now` (epoch seconds): (start, end), end exclusive."""
    if period == "minute":
        start = int(now // 60) * 60
        return start, start + 60
    if period == "day":
        start = int(now // 86_400) * 86_400
        return start, start + 86_400
    if period == "month":
        t = datetime.fromtimestamp(now, UTC)
        start_dt = datetime(t.year, t.month, 1, tzinfo=UTC)
        end_dt = datetime(t.year + (t.month == 12), t.month % 12 + 1, 1, tzinfo=UTC)
        return calendar.timegm(start_dt.timetuple()), calendar.timegm(end_dt.timetuple())
    raise ValueError(f"unknown period {period!r}")


def usd_to_micros(usd: Decimal) -> int:
    return int((usd * MICROS_PER_USD).to_integral_value(rounding=ROUND_CEILING))


def micros_to_usd(micros: int) -> Decimal:
    return (Decimal(micros) / MICROS_PER_USD).quantize(Decimal("0.000001"))


class Priced(Protocol):
    """A price in USD per million tokens (`usage.pricing.Price`)."""

    @property
    def input_per_mtok(self) -> Decimal: ...

    @property
    def output_per_mtok(self) -> Decimal: ...


def cost_micros(price: Priced, input_tokens: int, output_tokens: int) -> int:
    """Cost in micro-USD, rounded up: tokens × (USD per 1M tokens) is exactly micro-USD."""
    exact = input_tokens * price.input_per_mtok + output_tokens * price.output_per_mtok
    return int(exact.to_integral_value(rounding=ROUND_CEILING))


@dataclass(frozen=True, slots=True)
class Rule:
    """One configured limit (a Limit row)."""

    limit_id: int
    scope: str
    period: str
    calls: int | None = None
    tokens: int | None = None
    usd: Decimal | None = None
    route_id: int | None = None
    team_id: int | None = None
    consumer_id: int | None = None

    @property
    def caps_tokens_or_money(self) -> bool:
        return self.tokens is not None or self.usd is not None


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling which route, with the names used in messages."""

    route_id: int
    route_name: str
    consumer_id: int
    consumer_name: str
    team_id: int
    team_name: str
    provider: str
    model: str


@dataclass(slots=True)
class Check:
    """One counter a call is checked against and charged to."""

    subject: str
    period: str
    calls: int = NO_CAP
    tokens: int = NO_CAP
    usd_micros: int = NO_CAP
    scopes: list[str] = field(default_factory=list)
    description: str = ""
    window_start: int = 0
    window_end: int = 0

    def key(self, prefix: str) -> str:
        return f"{prefix}{self.subject}:{_PERIOD_LETTER[self.period]}:{self.window_start}"

    def caps(self) -> tuple[int, int, int]:
        return self.calls, self.tokens, self.usd_micros

    def merge(self, rule: Rule) -> None:
        for attr, value in (("calls", rule.calls), ("tokens", rule.tokens),
                            ("usd_micros", None if rule.usd is None else usd_to_micros(rule.usd))):
            if value is not None:
                current = getattr(self, attr)
                setattr(self, attr, value if current == NO_CAP else min(current, value))
        if rule.scope not in self.scopes:
            self.scopes.append(rule.scope)


def subject_of(rule: Rule, caller: Caller) -> tuple[str, str]:
    """(counter subject, words for messages) of a rule applied to a caller."""
    r, c, t = caller.route_id, caller.consumer_id, caller.team_id
    if rule.scope == ROUTE:
        return f"r{r}", f"route '{caller.route_name}' (all callers)"
    if rule.scope in (ROUTE_PER_CONSUMER, CONSUMER_ON_ROUTE):
        return f"r{r}c{c}", f"consumer '{caller.consumer_name}' on route '{caller.route_name}'"
    if rule.scope == ROUTE_PER_TEAM:
        return f"r{r}t{t}", f"team '{caller.team_name}' on route '{caller.route_name}'"
    if rule.scope == TEAM:
        return f"t{t}", f"team '{caller.team_name}' (all routes)"
    return f"c{c}", f"consumer '{caller.consumer_name}' (all routes)"


@dataclass(frozen=True, slots=True)
class LimitsTable:
    """Every configured limit, indexed for the hot path."""

    by_route: dict[int, tuple[Rule, ...]] = field(default_factory=dict)
    consumer_on_route: dict[tuple[int, int], tuple[Rule, ...]] = field(default_factory=dict)
    by_team: dict[int, tuple[Rule, ...]] = field(default_factory=dict)
    by_consumer: dict[int, tuple[Rule, ...]] = field(default_factory=dict)
    default_consumer: tuple[Rule, ...] = ()

    def rules_for(self, caller: Caller) -> list[Rule]:
        """The rules that apply to this caller on this route (overrides resolved)."""
        own_on_route = self.consumer_on_route.get((caller.route_id, caller.consumer_id), ())
        rules = [r for r in self.by_route.get(caller.route_id, ())
                 if not (own_on_route and r.scope == ROUTE_PER_CONSUMER)]
        rules += own_on_route
        rules += self.by_team.get(caller.team_id, ())
        rules += self.by_consumer.get(caller.consumer_id) or self.default_consumer
        return rules

    def checks_for(self, caller: Caller, now: float) -> list[Check]:
        """One Check per counter (subject and period), caps merged, windows set for `now`."""
        checks: dict[tuple[str, str], Check] = {}
        for rule in self.rules_for(caller):
            subject, words = subject_of(rule, caller)
            check = checks.get((subject, rule.period))
            if check is None:
                start, end = window(rule.period, now)
                check = checks[(subject, rule.period)] = Check(
                    subject=subject, period=rule.period, description=words, window_start=start, window_end=end
                )
            check.merge(rule)
        return list(checks.values())


def seconds_until(end: int, now: float) -> int:
    return max(1, math.ceil(end - now))

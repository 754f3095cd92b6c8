"""The limit rules as plain data: windows, which limits apply (overrides), merged counters, estimates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from providers.base import ChatMessage, ChatRequest, CommonParams, CompletionsRequest, EmbeddingsRequest
from usage.limits import rules
from usage.limits.estimate import apply_output_cap, input_tokens_bound, output_tokens_bound
from usage.limits.rules import Caller, LimitsTable, Rule


@dataclass(frozen=True)
class Price:
    """A price in USD per 1M tokens, shaped like usage.pricing.Price."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal

CALLER = Caller(route_id=1, route_name="chat", consumer_id=7, consumer_name="alice", team_id=3, team_name="search",
                provider="mock", model="mock-1")


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


def test_windows_are_fixed_utc_minute_day_and_calendar_month() -> None:
    now = ts(2026, 2, 28, 23, 59, 30)
    assert rules.window("minute", now) == (ts(2026, 2, 28, 23, 59), ts(2026, 3, 1, 0, 0))
    assert rules.window("day", now) == (ts(2026, 2, 28), ts(2026, 3, 1))
    assert rules.window("month", now) == (ts(2026, 2, 1), ts(2026, 3, 1))
    assert rules.window("month", ts(2026, 12, 31, 12)) == (ts(2026, 12, 1), ts(2027, 1, 1))


def test_every_scope_applies_and_consumer_limits_override_their_defaults() -> None:
    table = LimitsTable(
        by_route={1: (Rule(1, rules.ROUTE, "minute", calls=100, route_id=1),
                      Rule(2, rules.ROUTE_PER_CONSUMER, "minute", calls=10, route_id=1),
                      Rule(3, rules.ROUTE_PER_TEAM, "day", tokens=5000, route_id=1))},
        by_team={3: (Rule(4, rules.TEAM, "month", usd=Decimal("100"), team_id=3),)},
        default_consumer=(Rule(5, rules.DEFAULT_CONSUMER, "day", calls=1000),),
    )
    scopes = sorted(r.scope for r in table.rules_for(CALLER))
    assert scopes == ["default_consumer", "route", "route_team", "route_user", "team"]

    own = LimitsTable(
        by_route=table.by_route, by_team=table.by_team, default_consumer=table.default_consumer,
        consumer_on_route={(1, 7): (Rule(6, rules.CONSUMER_ON_ROUTE, "minute", calls=50, route_id=1, consumer_id=7),)},
        by_consumer={7: (Rule(7, rules.CONSUMER, "day", calls=20, consumer_id=7),)},
    )
    scopes = sorted(r.scope for r in own.rules_for(CALLER))
    # The consumer's own limits replace the route's per-consumer limit and the default.
    assert scopes == ["consumer", "consumer_on_route", "route", "route_team", "team"]


def test_limits_on_the_same_counter_merge_to_the_lowest_cap() -> None:
    table = LimitsTable(by_consumer={7: (Rule(1, rules.CONSUMER, "minute", calls=10, consumer_id=7),
                                         Rule(2, rules.CONSUMER, "minute", tokens=300, consumer_id=7))},
                        by_team={3: (Rule(3, rules.TEAM, "minute", calls=5, team_id=3),)})
    checks = {c.subject: c for c in table.checks_for(CALLER, ts(2026, 1, 1))}
    assert checks["c7"].caps() == (10, 300, rules.NO_CAP)
    assert checks["t3"].caps() == (5, rules.NO_CAP, rules.NO_CAP)
    assert checks["c7"].key("p:") == f"p:c7:m:{int(ts(2026, 1, 1))}"


def test_reservation_bounds_input_and_output_tokens() -> None:
    chat = ChatRequest(messages=[ChatMessage("user", "Hello, world!")], params=CommonParams(n=2))
    apply_output_cap(chat, 50)
    assert chat.params.max_tokens == 50
    assert output_tokens_bound(chat) == 100
    assert input_tokens_bound(chat, "mock") == 4  # the mock's own count: exact
    # A byte bound for vendors: byte-level BPE never makes more tokens than bytes.
    assert input_tokens_bound(chat, "openai") == 3 + len(b"Hello, world!") + len("user") + 4
    explicit = CompletionsRequest(prompt="héllo", params=CommonParams(max_tokens=7))
    apply_output_cap(explicit, 50)
    assert explicit.params.max_tokens == 7
    assert input_tokens_bound(explicit, "openai") == 3 + 6
    embeddings = EmbeddingsRequest(inputs=["a b", "c"])
    assert output_tokens_bound(embeddings) == 0 and input_tokens_bound(embeddings, "mock") == 3


def test_cost_is_micro_usd_rounded_up() -> None:
    price = Price(Decimal("0.15"), Decimal("0.60"))
    assert rules.cost_micros(price, 1000, 100) == 210  # 150 + 60 micro-USD
    assert rules.cost_micros(price, 1, 0) == 1  # 0.15 micro-USD rounds up
    assert rules.micros_to_usd(2_500_000) == Decimal("2.500000")

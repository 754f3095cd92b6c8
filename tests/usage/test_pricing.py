"""Prices: the in-process table (exact and prefix matches, effective dates, the free mock provider),
Decimal costs, the seeded list prices, and the recorder stamping the price in effect at call time."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.apps import apps

from usage import pricing
from usage.events import UsageEventData
from usage.models import ModelPrice
from usage.pricing import Price, PriceTable, cost_usd, price_lookup

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def table(*rows: tuple[str, str, str, str, datetime]) -> PriceTable:
    return PriceTable.build([(p, m, Price(Decimal(i), Decimal(o), at, n)) for n, (p, m, i, o, at) in enumerate(rows)])


def test_exact_match_wins_over_prefix_and_longest_prefix_wins() -> None:
    t = table(("openai", "gpt-4o", "2.50", "10", T0), ("openai", "gpt-4o-mini", "0.15", "0.60", T0),
              ("openai", "gpt-4", "30", "60", T0))
    at = T0 + timedelta(days=1)
    assert price_lookup(t, provider="openai", model="gpt-4o-mini", at=at).input_per_mtok == Decimal("0.15")
    assert price_lookup(t, provider="openai", model="gpt-4o-mini-2024-07-18", at=at).input_per_mtok == Decimal("0.15")
    assert price_lookup(t, provider="openai", model="gpt-4o-2024-08-06", at=at).input_per_mtok == Decimal("2.50")
    assert price_lookup(t, provider="openai", model="gpt-4-0613", at=at).input_per_mtok == Decimal("30")
    # A prefix must end at a separator: gpt-4 does not price gpt-4o-something-else or gpt-4.5.
    assert price_lookup(t, provider="openai", model="gpt-4.5-preview", at=at) is None
    assert price_lookup(t, provider="anthropic", model="gpt-4o", at=at) is None


def test_the_price_in_effect_at_the_call_time_is_used() -> None:
    t = table(("openai", "gpt-4o", "5", "15", T0), ("openai", "gpt-4o", "2.50", "10", T0 + timedelta(days=30)))
    assert price_lookup(t, provider="openai", model="gpt-4o", at=T0 - timedelta(seconds=1)) is None
    assert price_lookup(t, provider="openai", model="gpt-4o", at=T0 + timedelta(days=29)).input_per_mtok == 5
    assert price_lookup(t, provider="openai", model="gpt-4o", at=T0 + timedelta(days=30)).input_per_mtok == Decimal(
        "2.50")


def test_mock_is_free_unless_priced_and_bedrock_region_profiles_match() -> None:
    empty = PriceTable.build([])
    free = price_lookup(empty, provider="mock", model="mock-chat-1", at=T0)
    assert free is not None and free.input_per_mtok == 0 and free.id is None
    priced = table(("mock", "mock-chat-1", "1", "2", T0))
    assert price_lookup(priced, provider="mock", model="mock-chat-1", at=T0).output_per_mtok == 2
    bedrock = table(("bedrock", "anthropic.claude-3-5-sonnet", "3", "15", T0))
    assert price_lookup(bedrock, provider="bedrock", model="us.anthropic.claude-3-5-sonnet-20240620-v1:0",
                        at=T0).input_per_mtok == 3


def test_cost_is_an_exact_decimal_quantized_to_1e_10() -> None:
    price = Price(Decimal("0.15"), Decimal("0.60"))
    cost = cost_usd(price, input_tokens=1234, output_tokens=567)
    assert isinstance(cost, Decimal)
    assert cost == Decimal("0.0005253000")  # (1234 × 0.15 + 567 × 0.60) / 1e6
    assert cost_usd(None, input_tokens=10**6, output_tokens=10**6) == Decimal("0")
    assert cost_usd(Price(Decimal("0.075"), Decimal("0")), input_tokens=1, output_tokens=0) == Decimal("0.0000000750")
    tiny = Price(Decimal("0.00005"), Decimal("0"))  # 5e-11 USD a token: below the quantum, rounded half-even
    assert cost_usd(tiny, input_tokens=3, output_tokens=0) == Decimal("0.0000000002")


@pytest.mark.django_db
def test_seeded_list_prices_cover_the_common_providers() -> None:
    ModelPrice.objects.all().delete()  # a transactional test may have flushed the seed already
    seed = importlib.import_module("usage.migrations.0004_seed_model_prices")
    seed.seed(apps, None)
    providers = set(ModelPrice.objects.values_list("provider", flat=True))
    assert {"openai", "anthropic", "cohere", "mistral", "gemini", "bedrock"} <= providers
    mini = ModelPrice.objects.get(provider="openai", model="gpt-4o-mini")
    assert (mini.input_per_mtok, mini.output_per_mtok) == (Decimal("0.15"), Decimal("0.60"))
    assert "2025-08-15" in mini.source
    assert not ModelPrice.objects.filter(input_per_mtok__lt=0).exists()


@pytest.mark.django_db
def test_table_reloads_only_when_model_prices_change() -> None:
    ModelPrice.objects.all().delete()
    pricing.prices_load()
    assert not pricing.prices_refresh_if_changed()
    row = ModelPrice.objects.create(provider="openai", model="gpt-test", input_per_mtok=Decimal("1"),
                                    output_per_mtok=Decimal("2"), effective_from=T0)
    assert pricing.prices_refresh_if_changed()
    assert pricing.price_table().lookup(provider="openai", model="gpt-test", at=T0).id == row.pk
    row.input_per_mtok = Decimal("3")
    row.save()
    assert pricing.prices_refresh_if_changed()
    assert pricing.price_table().lookup(provider="openai", model="gpt-test", at=T0).input_per_mtok == 3


def test_event_price_stamps_price_and_cost() -> None:
    t = table(("openai", "gpt-4o-mini", "0.15", "0.60", T0))
    event = UsageEventData(request_id="r1", created_at=T0 + timedelta(hours=1), api_family="openai", status_code=200,
                           provider="openai", model="gpt-4o-mini", input_tokens=1000, output_tokens=100)
    pricing.event_price(event, t)
    assert (event.input_price_per_mtok, event.output_price_per_mtok) == (Decimal("0.15"), Decimal("0.60"))
    assert event.cost_usd == Decimal("0.0002100000") and event.price_id == 0
    unknown = UsageEventData(request_id="r2", created_at=T0, api_family="openai", status_code=200,
                             provider="openai", model="nope", input_tokens=5)
    pricing.event_price(unknown, t)
    assert unknown.cost_usd == 0 and unknown.input_price_per_mtok is None and unknown.price_id is None

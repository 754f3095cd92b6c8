"""Roll-ups and reports: totals equal the raw sum before, during and after roll-ups, re-runs change
nothing, late events are folded in, retention keeps the aggregates, names are those at the time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command

from routes import services as route_services
from usage.events import UsageEventData
from usage.models import UsageDaily, UsageEvent, UsageHourly
from usage.reports import ReportError, ReportFilters, parse_day, raw_totals, usage_report
from usage.rollup import usage_events_prune, usage_rollup, usage_rollup_rebuild
from usage.services import usage_events_write

pytestmark = pytest.mark.django_db

DAY = date(2025, 3, 10)


def at(day: date, hour: int = 12, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


@pytest.fixture
def seeded(make_event: Callable[..., UsageEventData]) -> list[UsageEventData]:
    """Calls over three days, two teams, routes, models, successes and failures, with costs."""
    events = []
    for i in range(60):
        day = DAY + timedelta(days=i % 3)
        failed = i % 7 == 0
        events.append(make_event(
            created_at=at(day, hour=i % 24, minute=i % 60),
            team_id=1 + i % 2, team_name=f"team-{1 + i % 2}", consumer_id=10 + i % 4, consumer_name=f"c{i % 4}",
            route_id=100 + i % 3, route_name=f"route-{i % 3}", provider="openai", model=f"gpt-{i % 2}",
            status_code=502 if failed else 200, error_code="UPSTREAM_ERROR" if failed else "",
            input_tokens=0 if failed else 10 + i, output_tokens=0 if failed else 2 * i,
            total_tokens=0 if failed else 10 + 3 * i,
            input_price_per_mtok=Decimal("0.15"), output_price_per_mtok=Decimal("0.60"),
            cost_usd=Decimal("0") if failed else Decimal(f"0.0000{i:03d}1234"),
        ))
    usage_events_write(events=events)
    return events


def report(group_by: tuple[str, ...] = ("team",), **filters: Any) -> Any:
    return usage_report(start=DAY - timedelta(days=1), end=DAY + timedelta(days=5), group_by=group_by,
                        filters=ReportFilters(**filters))


def metrics(totals: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(totals[k] for k in ("calls", "errors", "input_tokens", "output_tokens", "total_tokens", "cost_usd"))


@pytest.mark.parametrize("group_by", [("team",), ("consumer",), ("route",), ("model",), ("day",), ("team", "day")])
def test_report_totals_equal_the_raw_sum_before_and_after_rollup(seeded, group_by) -> None:
    raw = raw_totals()
    assert raw["calls"] == 60 and raw["cost_usd"] > 0
    before = report(group_by)
    assert metrics(before.totals) == metrics(raw)
    assert sum(r["calls"] for r in before.rows) == 60
    assert sum((r["cost_usd"] for r in before.rows), Decimal("0")) == raw["cost_usd"]
    assert usage_rollup() == 60
    after = report(group_by)
    assert metrics(after.totals) == metrics(raw)
    assert after.rows == before.rows


def test_rerunning_the_rollup_changes_nothing_and_rebuild_gives_the_same(seeded) -> None:
    usage_rollup()
    snapshot = sorted(UsageDaily.objects.values_list("dims_hash", "bucket_start", "calls", "cost_usd"))
    hourly = UsageHourly.objects.count()
    assert usage_rollup() == 0
    assert sorted(UsageDaily.objects.values_list("dims_hash", "bucket_start", "calls", "cost_usd")) == snapshot
    assert usage_rollup_rebuild(start=DAY, end=DAY + timedelta(days=2)) == 60
    assert sorted(UsageDaily.objects.values_list("dims_hash", "bucket_start", "calls", "cost_usd")) == snapshot
    assert UsageHourly.objects.count() == hourly
    assert metrics(report().totals) == metrics(raw_totals())


def test_hourly_and_daily_aggregates_hold_the_same_totals(seeded) -> None:
    usage_rollup()
    for model in (UsageHourly, UsageDaily):
        rows = list(model.objects.all())
        assert sum(r.calls for r in rows) == 60
        assert sum((r.cost_usd for r in rows), Decimal("0")) == raw_totals()["cost_usd"]
        assert sum(r.errors for r in rows) == raw_totals()["errors"]


def test_a_late_event_is_folded_into_its_old_bucket(seeded, make_event) -> None:
    usage_rollup()
    late = make_event(created_at=at(DAY, 3), team_id=1, team_name="team-1", consumer_id=10, consumer_name="c0",
                      route_id=100, route_name="route-0", provider="openai", model="gpt-0", input_tokens=1000,
                      total_tokens=1000, cost_usd=Decimal("0.5"))
    usage_events_write(events=[late])
    assert report(("day",)).totals["calls"] == 61  # visible at once, before any roll-up
    assert usage_rollup() == 1
    day_row = UsageDaily.objects.get(bucket_start=at(DAY, 0), dims_hash__in=UsageDaily.objects.filter(
        team_id=1, consumer_id=10, route_id=100, model="gpt-0", status_code=200).values("dims_hash"))
    assert day_row.cost_usd >= Decimal("0.5")
    assert metrics(report(("day",)).totals) == metrics(raw_totals())


def test_retention_deletes_only_rolled_up_raw_events_and_reports_keep_the_totals(seeded) -> None:
    raw = raw_totals()
    now = at(DAY + timedelta(days=40))
    assert usage_events_prune(days=30, now=now) == 0  # nothing rolled up yet: nothing may go
    usage_rollup()
    assert usage_events_prune(days=30, now=now) == 60
    assert UsageEvent.objects.count() == 0
    assert metrics(report().totals) == metrics(raw)  # from the aggregates alone now
    assert usage_events_prune(days=0, now=now) == 0  # 0 = keep for ever


def test_report_filters_by_team_route_and_consumer(seeded) -> None:
    team1 = report(("route",), team_id=1)
    assert team1.totals["calls"] == 30
    assert metrics(team1.totals) == metrics(raw_totals(filters=ReportFilters(team_id=1)))
    route0 = report(("consumer",), route="route-0")
    assert {r["consumer"] for r in route0.rows} <= {"c0", "c1", "c2", "c3"}
    assert route0.totals["calls"] == 20
    assert report(("day",), consumer="c1").totals["calls"] == 15
    assert report(team_id=99).totals["calls"] == 0


def test_a_period_with_no_data_gives_no_rows_and_zero_totals(seeded) -> None:
    empty = usage_report(start=date(2020, 1, 1), end=date(2020, 1, 31), group_by=("team",))
    assert empty.rows == []
    assert empty.as_json()["totals"] == {"calls": 0, "errors": 0, "input_tokens": 0, "output_tokens": 0,
                                         "total_tokens": 0, "cost_usd": "0.0000000000"}


def test_malformed_dates_and_groups_are_refused() -> None:
    for raw in ("2025-13-01", "yesterday", "2025-1-1", "20250101"):
        with pytest.raises(ReportError):
            parse_day(raw, name="start", default=DAY)
    with pytest.raises(ReportError):
        usage_report(start=DAY, end=DAY - timedelta(days=1))
    with pytest.raises(ReportError):
        usage_report(start=DAY, end=DAY, group_by=("planet",))


def test_deleted_route_and_consumer_are_reported_under_their_names_at_the_time(make_route, make_caller,
                                                                               make_event) -> None:
    route = make_route(name="doomed-route")
    caller = make_caller(team="t-del", consumer="leaver", routes=(route,))
    consumer = caller.consumer
    event = make_event(route_id=route.pk, route_name=route.name, consumer_id=consumer.pk, consumer_name="leaver",
                       team_id=consumer.team_id, team_name="t-del", api_key_id=caller.api_key.pk,
                       created_at=at(DAY), cost_usd=Decimal("0.25"))
    route_services.route_delete(route=route)
    consumer.delete()  # its keys go with it
    usage_events_write(events=[event])  # recorded before the deletion, drained after it
    usage_rollup()
    by_route = report(("route", "consumer"), team_id=consumer.team_id)
    assert [(r["route"], r["consumer"], r["cost_usd"]) for r in by_route.rows] == [
        ("doomed-route", "leaver", Decimal("0.2500000000"))]


def test_report_csv_has_one_line_per_row(seeded) -> None:
    r = report(("team", "day"))
    lines = r.as_csv().splitlines()
    assert lines[0] == "team_id,team,day,calls,errors,input_tokens,output_tokens,total_tokens,cost_usd"
    assert len(lines) == 1 + len(r.rows)
    assert sum(Decimal(line.split(",")[-1]) for line in lines[1:]) == r.totals["cost_usd"]


def test_usage_rollup_and_usage_report_commands(seeded, capsys, make_route, make_caller) -> None:
    call_command("usage_rollup")
    assert "60 events folded" in capsys.readouterr().out
    call_command("usage_rollup")
    assert "0 events folded" in capsys.readouterr().out
    route_services.team_get_or_create(name="team-1")
    call_command("usage_report", "--since", str(DAY), "--until", str(DAY + timedelta(days=2)), "--group-by", "day",
                 "--csv")
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("day,calls") and len(out) == 4
    call_command("usage_report", "--since", str(DAY), "--group-by", "route")
    table = capsys.readouterr().out
    assert "TOTAL" in table and "route-0" in table

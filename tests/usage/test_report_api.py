"""`GET /api/2.0/gateway/usage/`: the response shape, team scoping (403 for another team), CSV, bad input."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from usage.reports import raw_totals
from usage.services import usage_events_write

pytestmark = pytest.mark.django_db

URL = "/api/2.0/gateway/usage/"
DAY = date(2025, 5, 2)
PERIOD = {"start": "2025-05-01", "end": "2025-05-04"}


@pytest.fixture
def teams(make_caller, make_event) -> dict[str, Any]:
    a = make_caller(team="team-a", consumer="alice")
    a2 = make_caller(team="team-a", consumer="anna")
    b = make_caller(team="team-b", consumer="bob")
    admin = make_caller(team="platform", consumer="ops", is_admin=True)
    events = []
    for i, caller in enumerate([a, a, a2, b, b, b]):
        c = caller.consumer
        events.append(make_event(
            created_at=datetime(DAY.year, DAY.month, DAY.day, 9, i, tzinfo=UTC) + timedelta(days=i % 2),
            team_id=c.team_id, team_name=c.team.name, consumer_id=c.pk, consumer_name=c.name,
            route_id=7, route_name="chat", provider="openai", model="gpt-4o-mini",
            status_code=429 if i == 5 else 200, input_tokens=100 * (i + 1), output_tokens=10,
            total_tokens=100 * i + 110,
            input_price_per_mtok=Decimal("0.15"), output_price_per_mtok=Decimal("0.60"),
            cost_usd=Decimal("0.0000210000") * (i + 1),
        ))
    usage_events_write(events=events)
    return {"a": a, "b": b, "admin": admin}


def get(key: str, **params: str) -> Any:
    return Client().get(URL, params, HTTP_AUTHORIZATION=f"Bearer {key}")


def test_admin_sees_every_team_in_the_documented_shape(teams) -> None:
    response = get(teams["admin"].key, group_by="team", **PERIOD)
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"rows", "totals"}
    assert [r["team"] for r in body["rows"]] == ["team-b", "team-a"]  # largest cost first
    row = body["rows"][0]
    assert set(row) == {"team_id", "team", "calls", "errors", "input_tokens", "output_tokens", "total_tokens",
                        "cost_usd"}
    assert isinstance(row["cost_usd"], str) and Decimal(row["cost_usd"]) > 0
    assert (row["calls"], row["errors"]) == (3, 1)
    totals = body["totals"]
    raw = raw_totals()
    assert totals == {"calls": 6, "errors": 1, "input_tokens": raw["input_tokens"], "output_tokens": 60,
                      "total_tokens": raw["total_tokens"], "cost_usd": str(raw["cost_usd"])}
    assert Decimal(totals["cost_usd"]) == sum(Decimal(r["cost_usd"]) for r in body["rows"])


def test_a_team_key_sees_only_its_own_team(teams) -> None:
    own = get(teams["a"].key, group_by="consumer", **PERIOD).json()
    assert {r["consumer"] for r in own["rows"]} == {"alice", "anna"}
    assert own["totals"]["calls"] == 3
    team_a_id = teams["a"].consumer.team_id
    assert get(teams["a"].key, team=str(team_a_id), **PERIOD).status_code == 200
    assert get(teams["a"].key, team="team-a", **PERIOD).status_code == 200


def test_another_teams_id_is_403(teams) -> None:
    other = teams["b"].consumer.team_id
    response = get(teams["a"].key, team=str(other), **PERIOD)
    assert response.status_code == 403
    assert response.json()["error_code"] == "PERMISSION_DENIED"
    assert get(teams["a"].key, team="team-b", **PERIOD).status_code == 403
    # An admin may name any team.
    assert get(teams["admin"].key, team=str(other), **PERIOD).json()["totals"]["calls"] == 3


@pytest.mark.parametrize("params", [{"start": "2025-5-1"}, {"end": "tomorrow"}, {"start": "2025-02-30"},
                                    {"start": "2025-05-04", "end": "2025-05-01"}, {"group_by": "planet"}])
def test_malformed_parameters_are_400(teams, params) -> None:
    response = get(teams["admin"].key, **params)
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE" and response.json()["message"]


def test_no_key_is_401_and_an_empty_period_is_empty(teams) -> None:
    assert Client().get(URL).status_code == 401
    empty = get(teams["admin"].key, start="2019-01-01", end="2019-01-31").json()
    assert empty["rows"] == [] and empty["totals"]["calls"] == 0 and empty["totals"]["cost_usd"] == "0.0000000000"


def test_filters_and_day_grouping(teams) -> None:
    by_day = get(teams["admin"].key, group_by="day", route="chat", **PERIOD).json()
    assert [r["day"] for r in by_day["rows"]] == ["2025-05-02", "2025-05-03"]
    assert get(teams["admin"].key, consumer="bob", **PERIOD).json()["totals"]["calls"] == 3
    assert get(teams["admin"].key, route="nope", **PERIOD).json()["totals"]["calls"] == 0
    both = get(teams["admin"].key, group_by="route,model", **PERIOD).json()
    assert both["rows"][0]["route"] == "chat" and both["rows"][0]["model"] == "gpt-4o-mini"


def test_csv_format(teams) -> None:
    response = get(teams["admin"].key, group_by="team", format="csv", **PERIOD)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [r["team"] for r in rows] == ["team-b", "team-a"]
    assert sum(Decimal(r["cost_usd"]) for r in rows) == raw_totals()["cost_usd"]
    forbidden = get(teams["a"].key, team=str(teams["b"].consumer.team_id), format="csv", **PERIOD)
    assert forbidden.status_code == 403 and forbidden["Content-Type"] == "application/json"
    assert forbidden.json()["error_code"] == "PERMISSION_DENIED"


def test_the_openapi_document_describes_the_usage_report() -> None:
    schema = Client().get("/api/schema/", {"format": "json"}).json()
    operation = schema["paths"]["/api/2.0/gateway/usage/"]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {"group_by", "start", "end", "team", "format"}

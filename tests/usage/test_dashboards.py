"""Dashboards with Django auth: members see their team only, staff see everything; charts are SVG."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from usage.budgets import month_end_projection, team_monthly_budget_usd
from usage.limits.models import Limit
from usage.models import TeamMembership
from usage.services import usage_events_write

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(make_caller, make_event, django_user_model) -> dict[str, Any]:
    a = make_caller(team="team-a", consumer="alice")
    b = make_caller(team="team-b", consumer="bob")
    now = timezone.now()
    events = []
    for i in range(20):
        caller = a if i % 3 else b
        c = caller.consumer
        events.append(make_event(
            created_at=now - timedelta(days=i % 10, minutes=1), team_id=c.team_id, team_name=c.team.name,
            consumer_id=c.pk, consumer_name=c.name, route_id=1, route_name=f"route-{i % 2}", provider="openai",
            model="gpt-4o-mini", input_tokens=1000 + i, output_tokens=200, total_tokens=1200 + i,
            input_price_per_mtok=Decimal("0.15"), output_price_per_mtok=Decimal("0.6"), cost_usd=Decimal("0.00027"),
        ))
    usage_events_write(events=events)
    member = django_user_model.objects.create(username="member")
    TeamMembership.objects.create(user=member, team=a.consumer.team)
    staff = django_user_model.objects.create(username="staff", is_staff=True)
    outsider = django_user_model.objects.create(username="outsider")
    return {"a": a.consumer.team, "b": b.consumer.team, "member": member, "staff": staff, "outsider": outsider}


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_login_is_required() -> None:
    response = Client().get("/usage/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert Client().get("/accounts/login/").status_code == 200


def test_a_member_sees_their_team_with_charts_and_not_the_others(world) -> None:
    client = client_for(world["member"])
    home = client.get("/usage/")
    assert home.status_code == 302 and home["Location"] == f"/usage/teams/{world['a'].pk}/"
    page = client.get(home["Location"])
    assert page.status_code == 200
    html = page.content.decode()
    charts = set(re.findall(r'data-chart="([\w-]+)"', html))
    assert {"cost-daily", "tokens-daily", "by-route", "by-model", "by-consumer", "budget"} <= charts
    assert html.count("<svg") >= 6 and 'class="bar"' in html
    assert "alice" in html and "bob" not in html
    assert "No monthly budget set" in html
    assert client.get(f"/usage/teams/{world['b'].pk}/").status_code == 403
    assert client.get("/usage/org/").status_code == 403


def test_staff_see_the_org_page_and_every_team(world) -> None:
    client = client_for(world["staff"])
    assert client.get("/usage/")["Location"] == "/usage/org/"
    html = client.get("/usage/org/").content.decode()
    assert 'data-chart="by-team"' in html and "team-a" in html and "team-b" in html
    assert client.get(f"/usage/teams/{world['b'].pk}/").status_code == 200


def test_someone_in_no_team_sees_an_explanation(world) -> None:
    html = client_for(world["outsider"]).get("/usage/").content.decode()
    assert "not a member of any team" in html


def test_budget_comes_from_a_team_monthly_money_limit(world) -> None:
    team = world["a"]
    assert team_monthly_budget_usd(team_id=team.pk) is None
    Limit.objects.create(scope=Limit.Scope.TEAM, period=Limit.Period.MONTH, team=team, usd=Decimal("0.01"))
    assert team_monthly_budget_usd(team_id=team.pk) == Decimal("0.01")
    html = client_for(world["member"]).get(f"/usage/teams/{team.pk}/").content.decode()
    assert "Budget $0.0100" in html


def test_month_end_projection_is_linear_in_elapsed_time() -> None:
    from datetime import UTC, datetime

    mid = datetime(2025, 4, 16, 0, 0, tzinfo=UTC)  # 15 of April's 30 days gone
    assert month_end_projection(spent=Decimal("10"), now=mid) == Decimal("20")
    first_hour = datetime(2025, 4, 1, 1, 0, tzinfo=UTC)  # less than a day counts as a day
    assert month_end_projection(spent=Decimal("1"), now=first_hour) == Decimal("30")

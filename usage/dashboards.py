"""Usage dashboards (Django views, Django auth): one page per team, one org-wide page for staff.

A member (TeamMembership) sees only their teams' pages; staff see every team and the org page.
Charts are inline SVG rendered here (usage/charts.py): the pages work without internet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.safestring import mark_safe

from routes.models import Team

from . import charts
from .budgets import BudgetStatus, team_budget_status, team_monthly_budget_usd
from .models import TeamMembership
from .reports import ReportFilters, usage_daily_series, usage_report

DAYS = 30


def teams_visible_to(user: Any) -> QuerySet[Team]:
    """The teams whose dashboards `user` may open."""
    if user.is_staff:
        return Team.objects.order_by("name")
    return Team.objects.filter(memberships__user=user).order_by("name")


@dataclass(frozen=True)
class Period:
    start: date
    end: date

    @classmethod
    def last_days(cls, days: int = DAYS) -> Period:
        end = timezone.now().date()
        return cls(start=end - timedelta(days=days - 1), end=end)


def _breakdowns(period: Period, filters: ReportFilters) -> dict[str, Any]:
    series = usage_daily_series(start=period.start, end=period.end, filters=filters)
    days = [(row["day"].strftime("%m-%d"), row) for row in series]
    by_route = usage_report(start=period.start, end=period.end, group_by=("route",), filters=filters)
    by_model = usage_report(start=period.start, end=period.end, group_by=("model",), filters=filters)
    by_consumer = usage_report(start=period.start, end=period.end, group_by=("consumer",), filters=filters)
    return {
        "totals": by_route.totals,
        "cost_chart": mark_safe(charts.bar_chart(
            [(d, r["cost_usd"]) for d, r in days], title="Cost per day (USD)", fmt=charts.usd, chart_id="cost-daily")),
        "tokens_chart": mark_safe(charts.bar_chart(
            [(d, r["total_tokens"]) for d, r in days], title="Tokens per day", color=charts.PALETTE[1],
            chart_id="tokens-daily")),
        "route_chart": mark_safe(charts.hbar_chart(
            [(r["route"] or "(none)", r["cost_usd"]) for r in by_route.rows], title="Cost by route",
            chart_id="by-route")),
        "model_chart": mark_safe(charts.hbar_chart(
            [(f"{r['provider']}/{r['model']}" if r["model"] else "(none)", r["cost_usd"]) for r in by_model.rows],
            title="Cost by model", chart_id="by-model")),
        "consumer_chart": mark_safe(charts.hbar_chart(
            [(r["consumer"] or "(none)", r["total_tokens"]) for r in by_consumer.rows], title="Tokens by consumer",
            fmt=charts.count, chart_id="by-consumer")),
        "top_spenders": by_consumer.rows[:5],
        "routes": by_route.rows,
        "models": by_model.rows,
    }


def _budget(status: BudgetStatus) -> dict[str, Any]:
    return {
        "budget": status,
        "budget_chart": mark_safe(charts.budget_bar(
            spent=status.spent, projected=status.projected, budget=status.budget)),
    }


@login_required
def usage_home(request: HttpRequest) -> HttpResponse:
    """Staff go to the org page; a member of one team to its page; others see the list they may open."""
    if request.user.is_staff:
        return redirect("usage-org")
    teams = list(teams_visible_to(request.user))
    if len(teams) == 1:
        return redirect("usage-team", team_id=teams[0].pk)
    return render(request, "usage/home.html", {"teams": teams})


@login_required
def usage_team(request: HttpRequest, team_id: int) -> HttpResponse:
    team = get_object_or_404(Team, pk=team_id)
    member = TeamMembership.objects.filter(user_id=request.user.pk or 0, team=team).exists()
    if not (request.user.is_staff or member):
        raise PermissionDenied("You are not a member of this team.")
    period = Period.last_days()
    context = {
        "team": team,
        "period": period,
        "teams": teams_visible_to(request.user),
        **_breakdowns(period, ReportFilters(team_id=team.pk)),
        **_budget(team_budget_status(team_id=team.pk, now=timezone.now())),
    }
    return render(request, "usage/team.html", context)


@login_required
def usage_org(request: HttpRequest) -> HttpResponse:
    if not request.user.is_staff:
        raise PermissionDenied("The org-wide page is for staff.")
    period = Period.last_days()
    now = timezone.now()
    by_team = usage_report(start=period.start, end=period.end, group_by=("team",))
    month = team_budget_status(team_id=None, now=now)
    month_by_team = {
        r["team_id"]: r["cost_usd"]
        for r in usage_report(start=month.month, end=now.date(), group_by=("team",)).rows
    }
    team_rows = []
    for row in by_team.rows:
        spent = month_by_team.get(row["team_id"], Decimal("0"))
        budget = team_monthly_budget_usd(team_id=row["team_id"]) if row["team_id"] is not None else None
        team_rows.append({**row, "month_spent": spent, "budget": budget})
    context = {
        "period": period,
        "teams": teams_visible_to(request.user),
        "team_rows": team_rows,
        "team_chart": mark_safe(charts.hbar_chart(
            [(r["team"] or "(none)", r["cost_usd"]) for r in by_team.rows], title="Cost by team",
            chart_id="by-team")),
        **_breakdowns(period, ReportFilters()),
        **_budget(month),
    }
    return render(request, "usage/org.html", context)

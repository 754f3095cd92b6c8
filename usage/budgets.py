"""Budgets for the dashboards: the governance limits' monthly USD caps, and month-end projections."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal

from .pricing import COST_QUANTUM
from .reports import ReportFilters, usage_report

SECONDS_PER_DAY = 86_400


def team_monthly_budget_usd(*, team_id: int) -> Decimal | None:
    """The team's monthly budget in USD: its team-wide, per-calendar-month money limit, or None."""
    from .limits.models import Limit

    value = (Limit.objects.filter(scope=Limit.Scope.TEAM, period=Limit.Period.MONTH, team_id=team_id,
                                  usd__isnull=False)
             .values_list("usd", flat=True).first())
    return Decimal(value) if value is not None else None


def month_start(now: datetime) -> datetime:
    now = now.astimezone(UTC)
    return datetime(now.year, now.month, 1, tzinfo=UTC)


def month_end_projection(*, spent: Decimal, now: datetime) -> Decimal:
    """Spend at month end if the month goes on as it went so far (linear; the first day counts as one day)."""
    start = month_start(now)
    days = calendar.monthrange(start.year, start.month)[1]
    elapsed = max(Decimal(int((now - start).total_seconds())), Decimal(SECONDS_PER_DAY))
    projected = spent * Decimal(days * SECONDS_PER_DAY) / elapsed
    return max(projected, spent).quantize(COST_QUANTUM, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class BudgetStatus:
    month: date
    spent: Decimal
    projected: Decimal
    budget: Decimal | None

    @property
    def used_fraction(self) -> Decimal | None:
        return None if not self.budget else (self.spent / self.budget)

    @property
    def projected_over(self) -> bool:
        return self.budget is not None and self.projected > self.budget


def team_budget_status(*, team_id: int | None, now: datetime) -> BudgetStatus:
    """Month-to-date spend, its month-end projection and the budget (None: no limit) of a team, or of
    everyone when team_id is None."""
    start = month_start(now)
    report = usage_report(start=start.date(), end=now.astimezone(UTC).date(), group_by=("team",),
                          filters=ReportFilters(team_id=team_id))
    spent: Decimal = report.totals["cost_usd"]
    budget = team_monthly_budget_usd(team_id=team_id) if team_id is not None else None
    return BudgetStatus(month=start.date(), spent=spent, projected=month_end_projection(spent=spent, now=now),
                        budget=budget)

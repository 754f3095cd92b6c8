"""Limits: caps on calls, tokens and money at seven scopes (a model of the `usage` app)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class Limit(models.Model):
    """A cap on calls, tokens and/or money (USD) per renewal period, at one scope.

    Scopes: the route as a whole; each consumer or each team separately on a route; one consumer on
    one route; a team across routes; a consumer across routes; and a default per consumer across
    routes for consumers that have no consumer-wide limit of their own. A consumer-on-route limit
    likewise replaces the route's per-consumer limits for that consumer. Every other applicable limit
    is checked too: a call passes only if all of them allow it. Periods are fixed UTC windows: the
    minute, the day from 00:00 UTC, the calendar month from the 1st 00:00 UTC.
    """

    class Scope(models.TextChoices):
        ROUTE = "route", "Route: all callers together"
        ROUTE_PER_CONSUMER = "route_user", "Route: each consumer separately"
        ROUTE_PER_TEAM = "route_team", "Route: each team separately"
        CONSUMER_ON_ROUTE = "consumer_on_route", "One consumer on one route"
        TEAM = "team", "Team, across routes"
        CONSUMER = "consumer", "Consumer, across routes"
        DEFAULT_CONSUMER = "default_consumer", "Each consumer without a consumer limit, across routes"

    class Period(models.TextChoices):
        MINUTE = "minute", "per minute"
        DAY = "day", "per day (UTC)"
        MONTH = "month", "per calendar month (UTC)"

    ROUTE_SCOPES = (Scope.ROUTE, Scope.ROUTE_PER_CONSUMER, Scope.ROUTE_PER_TEAM)

    scope = models.CharField(max_length=32, choices=Scope.choices)
    period = models.CharField(max_length=16, choices=Period.choices, default=Period.MINUTE)
    route = models.ForeignKey("routes.Route", on_delete=models.CASCADE, null=True, blank=True, related_name="limits")
    team = models.ForeignKey("routes.Team", on_delete=models.CASCADE, null=True, blank=True, related_name="limits")
    consumer = models.ForeignKey(
        "routes.Consumer", on_delete=models.CASCADE, null=True, blank=True, related_name="limits"
    )
    calls = models.PositiveIntegerField(null=True, blank=True, help_text="Requests per period.")
    tokens = models.PositiveBigIntegerField(null=True, blank=True, help_text="Input + output tokens per period.")
    usd = models.DecimalField(
        max_digits=14, decimal_places=6, null=True, blank=True, verbose_name="USD",
        help_text="Money budget per period, at the model's price.",
    )
    description = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "usage"
        ordering = ["scope", "route", "team", "consumer", "period"]
        constraints = [
            models.CheckConstraint(
                condition=Q(calls__isnull=False) | Q(tokens__isnull=False) | Q(usd__isnull=False),
                name="limit_caps_something",
            ),
            models.CheckConstraint(
                condition=(
                    Q(scope__in=["route", "route_user", "route_team"], route__isnull=False, team__isnull=True,
                      consumer__isnull=True)
                    | Q(scope="consumer_on_route", route__isnull=False, team__isnull=True, consumer__isnull=False)
                    | Q(scope="team", route__isnull=True, team__isnull=False, consumer__isnull=True)
                    | Q(scope="consumer", route__isnull=True, team__isnull=True, consumer__isnull=False)
                    | Q(scope="default_consumer", route__isnull=True, team__isnull=True, consumer__isnull=True)
                ),
                name="limit_target_matches_scope",
            ),
            models.UniqueConstraint(fields=["scope", "route", "period"], name="one_route_limit_per_period",
                                    condition=Q(scope__in=["route", "route_user", "route_team"])),
            models.UniqueConstraint(fields=["route", "consumer", "period"], name="one_consumer_on_route_limit",
                                    condition=Q(scope="consumer_on_route")),
            models.UniqueConstraint(fields=["team", "period"], name="one_team_limit_per_period",
                                    condition=Q(scope="team")),
            models.UniqueConstraint(fields=["consumer", "period"], name="one_consumer_limit_per_period",
                                    condition=Q(scope="consumer")),
            models.UniqueConstraint(fields=["period"], name="one_default_consumer_limit_per_period",
                                    condition=Q(scope="default_consumer")),
        ]

    def __str__(self) -> str:
        caps = ", ".join(
            f"{value} {name}" for name, value in (("calls", self.calls), ("tokens", self.tokens), ("USD", self.usd))
            if value is not None
        )
        return f"{self.get_scope_display()} {self.target_name()}: {caps} {self.get_period_display()}"

    def target_name(self) -> str:
        if self.scope == self.Scope.CONSUMER_ON_ROUTE:
            return f"{self.consumer} on {self.route}"
        target = self.route or self.team or self.consumer
        return str(target) if target is not None else "(every consumer)"

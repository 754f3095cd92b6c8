"""Usage: one row per call, list prices, hourly/daily roll-ups, and who may see which team's dashboard.

Events and roll-ups keep names at the time (they outlive routes, consumers and keys).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


def money_field(**kwargs: Any) -> models.DecimalField[Any, Any]:
    """USD with ten decimal places: one token of the cheapest priced model costs ~1e-8 USD, and sums of
    quantized event costs stay exact (each event's cost is stored; roll-ups and reports add them)."""
    return models.DecimalField(max_digits=24, decimal_places=10, **kwargs)


def price_field(**kwargs: Any) -> models.DecimalField[Any, Any]:
    """A list price in USD per 1M tokens."""
    return models.DecimalField(max_digits=14, decimal_places=6, **kwargs)


class UsageEvent(models.Model):
    request_id = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(db_index=True)
    api_family = models.CharField(max_length=16)  # "mlflow", "deployments", "openai"
    # Plain ids, not foreign keys: an event outlives its route, consumer and key, and one recorded
    # just before a deletion must still insert.
    route_id = models.BigIntegerField(null=True, blank=True)
    route_name = models.CharField(max_length=128, blank=True)
    route_type = models.CharField(max_length=32, blank=True)
    provider = models.CharField(max_length=64, blank=True)
    model = models.CharField(max_length=256, blank=True)
    consumer_id = models.BigIntegerField(null=True, blank=True)
    consumer_name = models.CharField(max_length=128, blank=True)
    team_id = models.BigIntegerField(null=True, blank=True)
    team_name = models.CharField(max_length=128, blank=True)
    api_key_id = models.BigIntegerField(null=True, blank=True)
    environment = models.CharField(max_length=16, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    tokens_estimated = models.BooleanField(default=False)
    latency_ms = models.FloatField(default=0.0)
    status_code = models.PositiveSmallIntegerField()
    error_code = models.CharField(max_length=64, blank=True)
    stream = models.BooleanField(default=False)
    ttft_ms = models.FloatField(null=True, blank=True)
    # The price in effect at created_at (null: no price known, cost 0) and the cost it gave.
    price_id = models.BigIntegerField(null=True, blank=True)
    input_price_per_mtok = price_field(null=True, blank=True)
    output_price_per_mtok = price_field(null=True, blank=True)
    cost_usd = money_field(default=Decimal("0"))
    # When the row reached the database (created_at is when the call happened) and whether the
    # roll-up has folded it into the hourly/daily aggregates yet.
    ingested_at = models.DateTimeField(default=timezone.now)
    rolled_up = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["team_id", "created_at"]),
            models.Index(fields=["route_name", "created_at"]),
            models.Index(fields=["id"], condition=Q(rolled_up=False), name="usage_event_not_rolled_up"),
        ]

    def __str__(self) -> str:
        return f"{self.request_id} {self.route_name} {self.status_code}"

    @property
    def priced(self) -> bool:
        return self.input_price_per_mtok is not None


class ModelPrice(models.Model):
    """A provider's list price for one model from `effective_from` on (until a later row for it).

    `model` matches the route's model name exactly, or as a prefix followed by `-`, `:` or `@` (so
    `gpt-4o-mini` prices `gpt-4o-mini-2024-07-18`; the longest prefix wins). A variant priced
    differently from its family (say `o3-pro`) needs its own row.
    """

    provider = models.CharField(max_length=64)
    model = models.CharField(max_length=256)
    input_per_mtok = price_field(help_text="USD per 1M input tokens.")
    output_per_mtok = price_field(help_text="USD per 1M output tokens.")
    effective_from = models.DateTimeField()
    source = models.CharField(max_length=200, blank=True, help_text="Where and when the price was taken.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider", "model", "-effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "model", "effective_from"], name="model_price_unique"),
            models.CheckConstraint(condition=Q(input_per_mtok__gte=0) & Q(output_per_mtok__gte=0),
                                   name="model_price_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.provider}/{self.model} ${self.input_per_mtok}/${self.output_per_mtok} per 1M"


class UsageAggregate(models.Model):
    """Totals of the events of one bucket × team × consumer × route × model × environment × status."""

    bucket_start = models.DateTimeField()
    # sha1 of the dimensions below: the unique key (ids may be null, and NULLs never conflict).
    dims_hash = models.CharField(max_length=40)
    team_id = models.BigIntegerField(null=True, blank=True)
    team_name = models.CharField(max_length=128, blank=True)
    consumer_id = models.BigIntegerField(null=True, blank=True)
    consumer_name = models.CharField(max_length=128, blank=True)
    route_id = models.BigIntegerField(null=True, blank=True)
    route_name = models.CharField(max_length=128, blank=True)
    provider = models.CharField(max_length=64, blank=True)
    model = models.CharField(max_length=256, blank=True)
    environment = models.CharField(max_length=16, blank=True)
    status_code = models.PositiveSmallIntegerField()
    calls = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    input_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0)
    total_tokens = models.BigIntegerField(default=0)
    estimated_calls = models.BigIntegerField(default=0)
    unpriced_calls = models.BigIntegerField(default=0)
    latency_ms_total = models.FloatField(default=0.0)
    cost_usd = money_field(default=Decimal("0"))

    class Meta:
        abstract = True
        ordering = ["-bucket_start"]

    def __str__(self) -> str:
        return f"{self.bucket_start:%Y-%m-%d %H:%M} {self.team_name}/{self.consumer_name} {self.route_name}"


class UsageHourly(UsageAggregate):
    class Meta(UsageAggregate.Meta):
        verbose_name = "hourly usage"
        verbose_name_plural = "hourly usage"
        constraints = [models.UniqueConstraint(fields=["bucket_start", "dims_hash"], name="usage_hourly_unique")]
        indexes = [models.Index(fields=["team_id", "bucket_start"])]


class UsageDaily(UsageAggregate):
    class Meta(UsageAggregate.Meta):
        verbose_name = "daily usage"
        verbose_name_plural = "daily usage"
        constraints = [models.UniqueConstraint(fields=["bucket_start", "dims_hash"], name="usage_daily_unique")]
        indexes = [models.Index(fields=["team_id", "bucket_start"])]


class RollupState(models.Model):
    """One row: the roll-up's lock (select_for_update) and what its last run did."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_run_at = models.DateTimeField(null=True, blank=True)
    events_folded = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"roll-up state (last run {self.last_run_at})"


class TeamMembership(models.Model):
    """A Django user who may see a team's usage dashboard (staff see every team)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="team_memberships")
    team = models.ForeignKey("routes.Team", on_delete=models.CASCADE, related_name="memberships")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "team"], name="team_membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team}"


# Limits (calls, tokens, money per scope) live with the limiter in usage/limits/.
from .limits.models import Limit  # noqa: E402, F401

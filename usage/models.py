"""One row per call through the gateway, kept with the names at the time (rows outlive routes and keys)."""

from __future__ import annotations

from django.db import models


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

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["team_id", "created_at"]), models.Index(fields=["route_name", "created_at"])]

    def __str__(self) -> str:
        return f"{self.request_id} {self.route_name} {self.status_code}"


# Limits (calls, tokens, money per scope) live with the limiter in usage/limits/.
from .limits.models import Limit  # noqa: E402, F401

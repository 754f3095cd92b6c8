"""One row per call through the gateway, kept with the names at the time (rows outlive routes and keys)."""

from __future__ import annotations

from django.db import models


class UsageEvent(models.Model):
    request_id = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(db_index=True)
    api_family = models.CharField(max_length=16)  # "mlflow", "deployments", "openai"
    route = models.ForeignKey("routes.Route", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    route_name = models.CharField(max_length=128, blank=True)
    route_type = models.CharField(max_length=32, blank=True)
    provider = models.CharField(max_length=64, blank=True)
    model = models.CharField(max_length=256, blank=True)
    consumer = models.ForeignKey(
        "routes.Consumer", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    consumer_name = models.CharField(max_length=128, blank=True)
    team = models.ForeignKey("routes.Team", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    team_name = models.CharField(max_length=128, blank=True)
    api_key = models.ForeignKey("routes.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
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
        indexes = [models.Index(fields=["team", "created_at"]), models.Index(fields=["route_name", "created_at"])]

    def __str__(self) -> str:
        return f"{self.request_id} {self.route_name} {self.status_code}"

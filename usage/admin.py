"""Usage in the admin: raw events and daily roll-ups (read-only, CSV export), prices, dashboard members."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from .models import ModelPrice, TeamMembership, UsageDaily, UsageEvent, UsageHourly
from .reports import money

EVENT_COLUMNS = ["request_id", "created_at", "api_family", "team_name", "consumer_name", "route_name", "provider",
                 "model", "environment", "status_code", "error_code", "stream", "input_tokens", "output_tokens",
                 "total_tokens", "tokens_estimated", "input_price_per_mtok", "output_price_per_mtok", "cost_usd",
                 "latency_ms", "ttft_ms"]
AGGREGATE_COLUMNS = ["bucket_start", "team_name", "consumer_name", "route_name", "provider", "model", "environment",
                     "status_code", "calls", "errors", "input_tokens", "output_tokens", "total_tokens",
                     "estimated_calls", "unpriced_calls", "cost_usd"]


def csv_response(filename: str, columns: list[str], rows: Iterable[Any]) -> HttpResponse:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        values = []
        for c in columns:
            value = getattr(row, c)
            if c == "cost_usd":
                value = money(value)
            elif hasattr(value, "isoformat"):
                value = value.isoformat()
            values.append("" if value is None else value)
        writer.writerow(values)
    response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(UsageEvent)
class UsageEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "team_name", "consumer_name", "route_name", "provider", "model", "status_code",
                    "total_tokens", "cost_usd", "latency_ms"]
    list_filter = ["status_code", "provider", "api_family", "stream", "tokens_estimated", "team_name"]
    search_fields = ["request_id", "route_name", "consumer_name", "team_name", "model"]
    date_hierarchy = "created_at"
    actions = ["export_csv"]

    @admin.action(description="Export selected events as CSV")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[UsageEvent]) -> HttpResponse:
        name = f"usage_events_{timezone.now():%Y%m%d_%H%M%S}.csv"
        return csv_response(name, EVENT_COLUMNS, queryset.order_by("created_at").iterator())


class AggregateAdmin(ReadOnlyAdmin):
    list_display = ["bucket_start", "team_name", "consumer_name", "route_name", "model", "status_code", "calls",
                    "total_tokens", "cost_usd"]
    list_filter = ["team_name", "route_name", "provider", "status_code"]
    search_fields = ["team_name", "consumer_name", "route_name", "model"]
    date_hierarchy = "bucket_start"
    actions = ["export_csv"]

    @admin.action(description="Export selected rows as a cost report (CSV)")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse:
        name = f"{self.model._meta.model_name}_{timezone.now():%Y%m%d_%H%M%S}.csv"
        return csv_response(name, AGGREGATE_COLUMNS, queryset.order_by("bucket_start", "team_name").iterator())


admin.site.register(UsageDaily, AggregateAdmin)
admin.site.register(UsageHourly, AggregateAdmin)


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = ["provider", "model", "input_per_mtok", "output_per_mtok", "effective_from", "source"]
    list_filter = ["provider"]
    search_fields = ["model"]


@admin.register(TeamMembership)
class TeamMembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "team", "created_at"]
    list_filter = ["team"]

"""Limits in the admin: every scope, including team-wide and consumer-wide limits across routes."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import Limit

_TARGETS = {
    Limit.Scope.ROUTE: {"route"}, Limit.Scope.ROUTE_PER_CONSUMER: {"route"}, Limit.Scope.ROUTE_PER_TEAM: {"route"},
    Limit.Scope.CONSUMER_ON_ROUTE: {"route", "consumer"}, Limit.Scope.TEAM: {"team"},
    Limit.Scope.CONSUMER: {"consumer"}, Limit.Scope.DEFAULT_CONSUMER: set(),
}


class LimitAdminForm(forms.ModelForm):
    class Meta:
        model = Limit
        fields = ["scope", "period", "route", "team", "consumer", "calls", "tokens", "usd", "description"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        scope = data.get("scope")
        if scope is None:
            return data
        needed = _TARGETS[Limit.Scope(scope)]
        errors: dict[str, str] = {}
        for name in ("route", "team", "consumer"):
            if name in needed and not data.get(name):
                errors[name] = f"Required for the scope '{Limit.Scope(scope).label}'."
            if name not in needed and data.get(name):
                errors[name] = f"Leave empty for the scope '{Limit.Scope(scope).label}'."
        if all(data.get(n) is None for n in ("calls", "tokens", "usd")):
            errors["calls"] = "Set at least one of calls, tokens or USD."
        if errors:
            raise forms.ValidationError(errors)
        return data


@admin.register(Limit)
class LimitAdmin(admin.ModelAdmin):
    form = LimitAdminForm
    list_display = ["scope", "target", "period", "calls", "tokens", "usd", "updated_at"]
    list_filter = ["scope", "period", "route", "team"]
    search_fields = ["route__name", "team__name", "consumer__name", "description"]
    autocomplete_fields = ["route", "team", "consumer"]
    fieldsets = [
        (None, {"fields": ["scope", "period", "route", "team", "consumer"],
                "description": "Route scopes need a route; 'one consumer on one route' a route and a consumer; "
                               "team and consumer scopes their team or consumer; the default none. Periods are "
                               "fixed UTC windows: the minute, the day from 00:00 UTC, the month from the 1st."}),
        ("Caps (leave a cap empty for no cap)", {"fields": ["calls", "tokens", "usd", "description"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Limit]:
        return super().get_queryset(request).select_related("route", "team", "consumer__team")

    @admin.display(description="Applies to")
    def target(self, limit: Limit) -> str:
        return limit.target_name()

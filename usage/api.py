"""The cost report API: `GET /api/2.0/gateway/usage/` (JSON, or CSV with `format=csv`).

A team's gateway key sees its own team only (asking for another team is 403); an admin key sees all.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import orjson
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import renderers, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from routes.errors import InvalidRequest, PermissionDenied
from routes.principal import Principal

from .reports import GROUPS, Report, ReportError, ReportFilters, parse_day, parse_group_by, period_check, usage_report

DEFAULT_DAYS = 30


class CSVRenderer(renderers.BaseRenderer):
    """`format=csv`: a report as CSV; anything else (an error body) stays JSON, with its content type."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None,
               renderer_context: Mapping[str, Any] | None = None) -> bytes:
        if isinstance(data, Report):
            response = (renderer_context or {}).get("response")
            if response is not None:
                name = f"usage_{data.start}_{data.end}_{'-'.join(data.group_by)}.csv"
                response["Content-Disposition"] = f'attachment; filename="{name}"'
            return data.as_csv().encode()
        response = (renderer_context or {}).get("response")
        if response is not None:
            response["Content-Type"] = "application/json"
        return orjson.dumps(data)


class ReportJSONRenderer(renderers.JSONRenderer):
    def render(self, data: Any, accepted_media_type: str | None = None,
               renderer_context: Mapping[str, Any] | None = None) -> bytes:
        if isinstance(data, Report):
            data = data.as_json()
        return super().render(data, accepted_media_type, renderer_context)


def _team_filter(principal: Principal, raw: str | None) -> int | None:
    """The team id the caller may see: its own (or the one it named, if it is its own), any for admins."""
    if raw in (None, ""):
        return None if principal.is_admin else principal.team_id
    team_id = _resolve_team(str(raw))
    if principal.is_admin:
        return team_id
    if team_id != principal.team_id:
        raise PermissionDenied("This key may only see its own team's usage.")
    return team_id


def _resolve_team(raw: str) -> int:
    from routes.models import Team

    if raw.isdigit():
        return int(raw)
    team_id = Team.objects.filter(name=raw).values_list("id", flat=True).first()
    if team_id is None:
        # Unknown names answer like other teams' ids do for non-admins (checked by the caller).
        return -1
    return int(team_id)


def _metric_fields() -> dict[str, serializers.Field]:
    return {
        "calls": serializers.IntegerField(), "errors": serializers.IntegerField(),
        "input_tokens": serializers.IntegerField(), "output_tokens": serializers.IntegerField(),
        "total_tokens": serializers.IntegerField(),
        "cost_usd": serializers.CharField(help_text="USD as a decimal string."),
    }


def _group_fields() -> dict[str, serializers.Field]:
    return {
        "team_id": serializers.IntegerField(required=False, allow_null=True),
        "team": serializers.CharField(required=False),
        "consumer_id": serializers.IntegerField(required=False, allow_null=True),
        "consumer": serializers.CharField(required=False), "consumer_team": serializers.CharField(required=False),
        "route_id": serializers.IntegerField(required=False, allow_null=True),
        "route": serializers.CharField(required=False), "provider": serializers.CharField(required=False),
        "model": serializers.CharField(required=False), "day": serializers.DateField(required=False),
    }


REPORT_SCHEMA = inline_serializer(name="UsageReport", fields={
    "rows": inline_serializer(name="UsageReportRow", fields={**_group_fields(), **_metric_fields()}, many=True),
    "totals": inline_serializer(name="UsageReportTotals", fields=_metric_fields()),
})


class UsageReportApi(APIView):
    renderer_classes = [ReportJSONRenderer, CSVRenderer]

    @extend_schema(
        operation_id="usage_report",
        parameters=[
            OpenApiParameter("group_by", str, description=f"Comma-separated: {', '.join(GROUPS)} (default team)."),
            OpenApiParameter("start", OpenApiTypes.DATE, description="First UTC day (default: 29 days ago)."),
            OpenApiParameter("end", OpenApiTypes.DATE, description="Last UTC day, included (default: today)."),
            OpenApiParameter("team", str, description="Team id or name (a team key may only name its own)."),
            OpenApiParameter("route", str, description="Route name (at the time of the calls)."),
            OpenApiParameter("consumer", str, description="Consumer name."),
            OpenApiParameter("environment", str, description="development or production."),
            OpenApiParameter("format", str, enum=["json", "csv"], description="csv: text/csv, one line per row."),
        ],
        responses={200: REPORT_SCHEMA},
    )
    def get(self, request: Request) -> Response:
        principal = request.user
        assert isinstance(principal, Principal)
        params = request.query_params
        today = timezone.now().date()
        try:
            group_by = parse_group_by(params.get("group_by") or "team")
            end = parse_day(params.get("end"), name="end", default=today)
            start = parse_day(params.get("start"), name="start", default=end - timedelta(days=DEFAULT_DAYS - 1))
            period_check(start, end)
        except ReportError as exc:
            raise InvalidRequest(str(exc)) from None
        filters = ReportFilters(
            team_id=_team_filter(principal, params.get("team")),
            route=params.get("route") or None,
            consumer=params.get("consumer") or None,
            environment=params.get("environment") or None,
        )
        return Response(usage_report(start=start, end=end, group_by=group_by, filters=filters))

"""The limits API in MLflow's shape, extended: `POST /api/2.0/gateway/limits/` (admin key) and
`GET /api/2.0/gateway/limits/{route}` (an admin sees the configuration, a consumer their own limits
with used, remaining and reset time).

MLflow's 2.x client parses `limits` as `[Limit(calls: int, renewal_period, key)]`, so `limits` holds
the limits that cap calls (with `tokens` and `usd` beside, which it ignores) and `budgets` those that
cap only tokens or money.
"""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from usage.limits import services as limits

from .. import selectors
from ..errors import InvalidRequest
from ..models import Route
from .authentication import IsAdminKey
from .views import principal


class LimitSerializer(serializers.Serializer):
    key = serializers.ChoiceField(choices=["route", "user", "team"], default="route")
    renewal_period = serializers.ChoiceField(choices=["minute", "day", "month"], default="minute")
    calls = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    tokens = serializers.IntegerField(required=False, allow_null=True, min_value=0)
    usd = serializers.CharField(required=False, allow_null=True, help_text='A decimal string, e.g. "12.50".')


class LimitsSetInput(serializers.Serializer):
    route = serializers.CharField()
    limits = LimitSerializer(many=True)


class LimitsOutput(serializers.Serializer):
    route = serializers.CharField()
    limits = serializers.ListField(child=serializers.DictField(), help_text="Limits that cap calls.")
    budgets = serializers.ListField(child=serializers.DictField(), help_text="Limits on tokens or USD only.")


class LimitsSetApi(APIView):
    def get_permissions(self) -> list[Any]:
        return [IsAdminKey()]

    @extend_schema(operation_id="limits_set", request=LimitsSetInput, responses=LimitsOutput)
    def post(self, request: Request) -> Response:
        data: Any = request.data
        if not isinstance(data, dict) or not isinstance(data.get("route"), str) or not data.get("route"):
            raise InvalidRequest("route: the route's name is required.")
        route = get_object_or_404(Route, name=data["route"])
        entries = limits.parse_route_limits(data.get("limits"))
        limits.route_limits_set(route=route, entries=entries)
        return Response(limits.route_limits_config(route=route))


class LimitsGetApi(APIView):
    @extend_schema(operation_id="limits_get", responses=LimitsOutput)
    def get(self, request: Request, route: str) -> Response:
        caller = principal(request)
        found = get_object_or_404(selectors.routes_visible_to(caller), name=route)
        if caller.is_admin:
            return Response(limits.route_limits_config(route=found))
        return Response(limits.limits_status(caller=limits.Caller(
            route_id=found.pk, route_name=found.name, consumer_id=caller.consumer_id,
            consumer_name=caller.consumer_name, team_id=caller.team_id, team_name=caller.team_name,
            provider=found.provider, model=found.model_name,
        )))

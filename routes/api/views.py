"""The MLflow 2.5 route API: thin views over routes' services and selectors."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import selectors, services
from ..errors import InvalidRequest
from ..models import Route
from ..principal import Principal
from .authentication import IsAdminKey
from .pagination import paginate_routes
from .serializers import EndpointOutputSerializer, RouteCreateInputSerializer, RouteOutputSerializer


def principal(request: Request) -> Principal:
    """The authenticated caller (GatewayKeyAuthentication puts a Principal in request.user)."""
    assert isinstance(request.user, Principal)
    return request.user


def base_url(request: Request) -> str:
    configured: str = settings.GATEWAY["PUBLIC_URL"]
    return configured.rstrip("/") if configured else request.build_absolute_uri("/").rstrip("/")


def render_route(request: Request, route: Route) -> dict[str, Any]:
    return dict(RouteOutputSerializer(route, context={"base_url": base_url(request)}).data)


def page_size(request: Request) -> int:
    raw = request.query_params.get("max_results")
    if raw is None:
        return int(settings.GATEWAY["PAGE_SIZE"])
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise InvalidRequest("max_results must be an integer from 1 to 1000.")
    return int(raw)


class RouteListPage(serializers.Serializer):
    routes = RouteOutputSerializer(many=True)
    next_page_token = serializers.CharField(allow_null=True)


class RouteListCreateApi(APIView):
    def get_permissions(self) -> list[Any]:
        return [IsAdminKey()] if self.request.method == "POST" else list(super().get_permissions())

    @extend_schema(
        operation_id="routes_list",
        parameters=[OpenApiParameter("page_token", str, description="From the previous page's next_page_token.")],
        responses=RouteListPage,
    )
    def get(self, request: Request) -> Response:
        routes, token = paginate_routes(
            selectors.routes_visible_to(principal(request)).prefetch_related("limits"),
            page_token=request.query_params.get("page_token"),
            page_size=page_size(request),
        )
        return Response({"routes": [render_route(request, r) for r in routes], "next_page_token": token})

    @extend_schema(operation_id="routes_create", request=RouteCreateInputSerializer,
                   responses={200: RouteOutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = RouteCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        model = data["model"]
        route = services.route_create(
            name=data["name"],
            route_type=data["route_type"],
            provider=model["provider"],
            model_name=model["name"],
            config=model.get("config") or {},
        )
        return Response(render_route(request, route), status=status.HTTP_200_OK)


class RouteDetailApi(APIView):
    def get_permissions(self) -> list[Any]:
        return [IsAdminKey()] if self.request.method == "DELETE" else list(super().get_permissions())

    @extend_schema(operation_id="routes_get", responses=RouteOutputSerializer)
    def get(self, request: Request, name: str) -> Response:
        route = get_object_or_404(selectors.routes_visible_to(principal(request)), name=name)
        return Response(render_route(request, route))

    @extend_schema(operation_id="routes_delete", responses={200: None})
    def delete(self, request: Request, name: str) -> Response:
        route = get_object_or_404(Route, name=name)
        services.route_delete(route=route)
        return Response({}, status=status.HTTP_200_OK)


class EndpointListPage(serializers.Serializer):
    endpoints = EndpointOutputSerializer(many=True)
    next_page_token = serializers.CharField(allow_null=True)


class EndpointListApi(APIView):
    """MLflow deployments: the endpoints (routes) this key may query."""

    @extend_schema(
        operation_id="endpoints_list",
        parameters=[OpenApiParameter("page_token", str, description="From the previous page's next_page_token.")],
        responses=EndpointListPage,
    )
    def get(self, request: Request) -> Response:
        routes, token = paginate_routes(
            selectors.routes_visible_to(principal(request)).prefetch_related("limits"),
            page_token=request.query_params.get("page_token"),
            page_size=page_size(request),
        )
        context = {"base_url": base_url(request)}
        endpoints = EndpointOutputSerializer(routes, many=True, context=context).data
        return Response({"endpoints": endpoints, "next_page_token": token})


class EndpointDetailApi(APIView):
    @extend_schema(operation_id="endpoints_get", responses=EndpointOutputSerializer)
    def get(self, request: Request, name: str) -> Response:
        route = get_object_or_404(selectors.routes_visible_to(principal(request)), name=name)
        return Response(EndpointOutputSerializer(route, context={"base_url": base_url(request)}).data)

"""Input parsing and output rendering for the MLflow 2.5 route API."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from usage.limits.services import route_call_limit

from ..errors import InvalidRequest
from ..models import Route

# MLflow's Limit: `{calls, renewal_period, key}`, or null when the route has none.
LIMIT_SCHEMA = {
    "type": ["object", "null"],
    "properties": {
        "calls": {"type": "integer"},
        "renewal_period": {"type": "string"},
        "key": {"type": ["string", "null"]},
    },
}


class RouteCreateInputSerializer(serializers.Serializer):
    """Accepts MLflow's `{name, route_type, model: {name, provider, config}}` and the seed's
    `{name, route_type, data: {name, provider, <provider>_config: {...}}}`."""

    name = serializers.CharField(max_length=128)
    route_type = serializers.CharField(max_length=32)
    model = serializers.DictField(required=False)
    data = serializers.DictField(required=False)  # type: ignore[assignment]  # the seed's field name

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "model" in attrs and "data" in attrs:
            raise serializers.ValidationError("Give either 'model' or 'data', not both.")
        model = attrs.get("model", attrs.get("data"))
        if model is None:
            raise serializers.ValidationError({"model": "This field is required."})
        return {"name": attrs["name"], "route_type": attrs["route_type"], "model": model_spec(model)}


def model_spec(data: dict[str, Any]) -> dict[str, Any]:
    """`{name, provider, config | <provider>_config: {...}}` → `{name, provider, config: {...}}`."""
    name, provider = data.get("name"), data.get("provider")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("model.name (the provider's model name) is required.")
    if not isinstance(provider, str) or not provider:
        raise InvalidRequest("model.provider is required.")
    config_key = f"{provider.replace('-', '_')}_config"
    extra = sorted(set(data) - {"name", "provider", "config", config_key})
    if extra:
        raise InvalidRequest(f"Unknown field(s) in model: {', '.join(extra)} (expected 'config' or '{config_key}').")
    config = data.get(config_key, data.get("config", {}))
    if not isinstance(config, dict):
        raise InvalidRequest(f"model.{config_key} must be an object.")
    return {"name": name, "provider": provider, "config": config}


class RouteOutputSerializer(serializers.ModelSerializer):
    """`{name, route_type, model: {name, provider}, route_url, limit}`; never any config or secret."""

    model = serializers.SerializerMethodField()
    route_url = serializers.SerializerMethodField()
    limit = serializers.SerializerMethodField()

    class Meta:
        model = Route
        fields = ["name", "route_type", "model", "route_url", "limit"]

    def get_model(self, route: Route) -> dict[str, str]:
        return {"name": route.model_name, "provider": route.provider}

    def get_route_url(self, route: Route) -> str:
        return f"{self.context['base_url']}/gateway/{route.name}/invocations"

    @extend_schema_field(LIMIT_SCHEMA)
    def get_limit(self, route: Route) -> dict[str, Any] | None:
        return route_call_limit(route.limits.all())


class EndpointOutputSerializer(serializers.ModelSerializer):
    """MLflow deployments' endpoint: `{name, endpoint_type, model: {name, provider}, endpoint_url, limit}`.

    `limit` is always present (MLflow's 3.x client rejects its absence), null when none is set.
    """

    endpoint_type = serializers.CharField(source="route_type")
    model = serializers.SerializerMethodField()
    endpoint_url = serializers.SerializerMethodField()
    limit = serializers.SerializerMethodField()

    class Meta:
        model = Route
        fields = ["name", "endpoint_type", "model", "endpoint_url", "limit"]

    def get_model(self, route: Route) -> dict[str, str]:
        return {"name": route.model_name, "provider": route.provider}

    def get_endpoint_url(self, route: Route) -> str:
        return f"{self.context['base_url']}/endpoints/{route.name}/invocations"

    @extend_schema_field(LIMIT_SCHEMA)
    def get_limit(self, route: Route) -> dict[str, Any] | None:
        return route_call_limit(route.limits.all())

"""Python client for the LLM governance gateway (no Django; depends on httpx only).

A drop-in for the ``mlflow.gateway`` fluent API of MLflow 2.5 -- change only the import::

    from gateway_client import set_gateway_uri, create_route, query

    set_gateway_uri("http://gateway.internal:8000")   # or env GATEWAY_URI / MLFLOW_GATEWAY_URI
    # key: env GATEWAY_API_KEY, else MLFLOW_TRACKING_TOKEN  ->  "Authorization: Bearer <key>"
    create_route(
        name="product-review-gpt4",
        route_type="llm/v1/completions",
        data={"name": "gpt-4", "provider": "openai", "openai_config": {"openai_api_key": "..."}},
    )
    response = query(route="product-review-gpt4", data={"prompt": "..."})
    response["candidates"][0]["text"]

Routes come back as :class:`Route` (attributes ``name``, ``route_type``, ``model.name``,
``model.provider``, ``route_url``, ``limit``; ``to_dict()`` for the JSON). ``search_routes()``
returns one page (a list with ``.token``), ``list_routes()`` every route.
``get_usage(group_by="team", start=..., end=...)`` returns a cost report (:class:`UsageReport`, or
CSV text with ``format="csv"``). Errors raise :class:`GatewayClientError` subclasses with
``status``, ``error_code`` and ``message``.
"""

from gateway_client.client import (
    GatewayClient,
    create_route,
    delete_route,
    get_gateway_uri,
    get_limits,
    get_route,
    get_usage,
    list_routes,
    query,
    search_routes,
    set_gateway_uri,
    set_limits,
)
from gateway_client.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    GatewayClientError,
    GatewayConfigError,
    GatewayConnectionError,
    GatewayTimeoutError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    UpstreamError,
)
from gateway_client.types import Limit, LimitsConfig, PagedList, Route, RouteModelInfo, UsageReport

# MLflow 2.x spelling, for code that instantiates the client class directly.
MlflowGatewayClient = GatewayClient

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "GatewayClient",
    "GatewayClientError",
    "GatewayConfigError",
    "GatewayConnectionError",
    "GatewayTimeoutError",
    "Limit",
    "LimitsConfig",
    "MlflowGatewayClient",
    "NotFoundError",
    "PagedList",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "Route",
    "RouteModelInfo",
    "UpstreamError",
    "UsageReport",
    "create_route",
    "delete_route",
    "get_gateway_uri",
    "get_limits",
    "get_route",
    "get_usage",
    "list_routes",
    "query",
    "search_routes",
    "set_gateway_uri",
    "set_limits",
]

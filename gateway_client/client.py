"""HTTP client for the gateway's MLflow-2.5-compatible route API (DESIGN.md, contract 1).

``GatewayClient`` holds a pooled ``httpx.Client``; the module-level functions (``get_route``,
``query``, ...) mirror ``mlflow.gateway``'s fluent API and use one shared client per base URL.
The gateway key is read on every request (``api_key`` argument, else env ``GATEWAY_API_KEY``,
else ``MLFLOW_TRACKING_TOKEN``) and sent as ``Authorization: Bearer <key>``.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from gateway_client.errors import (
    GatewayClientError,
    GatewayConfigError,
    GatewayConnectionError,
    GatewayTimeoutError,
    error_class_for_status,
)
from gateway_client.types import LimitsConfig, PagedList, Route, UsageReport

__all__ = [
    "DEFAULT_TIMEOUT",
    "GatewayClient",
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

CRUD_ROUTE_BASE = "/api/2.0/gateway/routes/"
LIMITS_BASE = "/api/2.0/gateway/limits/"
USAGE_BASE = "/api/2.0/gateway/usage/"
QUERY_PREFIX = "/gateway/"
QUERY_SUFFIX = "/invocations"
DEFAULT_TIMEOUT = 300.0  # MLflow's gateway client waits as long for a provider's answer
USER_AGENT = "llm-governance-gateway-client/0.1"

ENV_URI = ("GATEWAY_URI", "MLFLOW_GATEWAY_URI")
ENV_KEY = ("GATEWAY_API_KEY", "MLFLOW_TRACKING_TOKEN")

_gateway_uri: str | None = None


def _is_databricks(uri: str) -> bool:
    return uri == "databricks" or uri.startswith("databricks://")


def _is_valid_uri(uri: str) -> bool:
    if _is_databricks(uri):
        return True
    try:
        parts = urlsplit(uri)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def set_gateway_uri(gateway_uri: str) -> None:
    """Set the gateway's base URL for the module-level functions (``http(s)://host[:port][/prefix]``).

    ``"databricks"`` is accepted as in MLflow's snippets: it then resolves to env ``GATEWAY_URI``,
    ``MLFLOW_GATEWAY_URI`` or ``DATABRICKS_HOST`` at call time, and ``DATABRICKS_TOKEN`` is a last
    fallback for the key.
    """
    if not isinstance(gateway_uri, str) or not _is_valid_uri(gateway_uri):
        raise GatewayConfigError(
            f"invalid gateway URI {gateway_uri!r}: expected http(s)://host[:port][/path] or 'databricks'"
        )
    global _gateway_uri
    _gateway_uri = gateway_uri


def get_gateway_uri() -> str:
    """The URI set by :func:`set_gateway_uri`, else env ``GATEWAY_URI``, else ``MLFLOW_GATEWAY_URI``."""
    if _gateway_uri is not None:
        return _gateway_uri
    for var in ENV_URI:
        if value := os.environ.get(var):
            return value
    raise GatewayConfigError(
        "no gateway URI: call gateway_client.set_gateway_uri(...) or set GATEWAY_URI (or MLFLOW_GATEWAY_URI)"
    )


def _resolve_base_url(uri: str) -> str:
    if _is_databricks(uri):
        for var in (*ENV_URI, "DATABRICKS_HOST"):
            value = os.environ.get(var)
            if value and not _is_databricks(value):
                uri = value
                break
        else:
            raise GatewayConfigError(
                "gateway URI is 'databricks' but none of GATEWAY_URI, MLFLOW_GATEWAY_URI, "
                "DATABRICKS_HOST names the gateway's URL"
            )
    if not _is_valid_uri(uri):
        raise GatewayConfigError(f"invalid gateway URI {uri!r}")
    return uri.rstrip("/")


def _quote(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise GatewayConfigError(f"a non-empty route name is required, got {name!r}")
    return quote(name, safe="")


def _error_from_response(resp: httpx.Response) -> GatewayClientError:
    """Map an error answer (MLflow, OpenAI or DRF shaped, or not JSON) to a typed error."""
    body: Any
    try:
        body = resp.json()
    except ValueError:
        body = resp.text
    error_code: str | None = None
    message: str | None = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):  # /v1 (OpenAI) shape
            message = err.get("message")
            code = err.get("code") or err.get("type")
            error_code = str(code) if code is not None else None
        else:
            if body.get("error_code") is not None:
                error_code = str(body["error_code"])
            raw_msg = body.get("message", body.get("detail", err))
            message = raw_msg if isinstance(raw_msg, str) or raw_msg is None else json.dumps(raw_msg)
    if not message:
        text = body if isinstance(body, str) else json.dumps(body)
        message = text.strip()[:1000] or resp.reason_phrase or f"HTTP {resp.status_code}"
    cls = error_class_for_status(resp.status_code)
    return cls(
        resp.status_code,
        error_code,
        message,
        body=body,
        headers={k.lower(): v for k, v in resp.headers.items()},
        url=str(resp.request.url),
        method=resp.request.method,
    )


class GatewayClient:
    """Client for one gateway. Thread-safe; use as a context manager or call :meth:`close`.

    Args:
        gateway_uri: base URL (``http://host:port``), ``"databricks"``, or None for
            :func:`get_gateway_uri` (resolved once, here).
        api_key: gateway key; None reads ``GATEWAY_API_KEY`` / ``MLFLOW_TRACKING_TOKEN`` on every
            request, so a rotated key in the environment is picked up.
        timeout: seconds to wait for an answer (provider calls can be slow).
        transport: optional ``httpx`` transport (tests).
    """

    def __init__(
        self,
        gateway_uri: str | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._gateway_uri = gateway_uri or get_gateway_uri()
        self._databricks = _is_databricks(self._gateway_uri)
        self.base_url = _resolve_base_url(self._gateway_uri)
        self._api_key = api_key
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 30.0)),
            transport=transport,
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            follow_redirects=False,
        )

    @property
    def gateway_uri(self) -> str:
        return self._gateway_uri

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing -------------------------------------------------------------------------

    def _api_key_now(self) -> str | None:
        if self._api_key:
            return self._api_key
        names = (*ENV_KEY, "DATABRICKS_TOKEN") if self._databricks else ENV_KEY
        for var in names:
            if value := os.environ.get(var):
                return value
        return None

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        text: bool = False,
    ) -> Any:
        """Send one request; return the decoded JSON (None for an empty body), or the body as text
        with ``text=True``; raise on an error answer."""
        headers = {}
        if key := self._api_key_now():
            headers["Authorization"] = f"Bearer {key}"
        url = self.base_url + path
        try:
            resp = self._http.request(
                method,
                url,
                headers=headers,
                params=dict(params) if params else None,
                json=json_body,
            )
        except httpx.TimeoutException as exc:
            raise GatewayTimeoutError(
                None, "TIMEOUT", f"no answer from the gateway: {exc}", url=url, method=method
            ) from exc
        except httpx.HTTPError as exc:
            raise GatewayConnectionError(
                None, "CONNECTION_ERROR", f"could not reach the gateway: {exc}", url=url, method=method
            ) from exc
        if resp.status_code >= 300:
            raise _error_from_response(resp)
        if text:
            return resp.text
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError as exc:
            raise GatewayClientError(
                resp.status_code,
                "INVALID_RESPONSE",
                f"the gateway answered non-JSON: {resp.text[:200]!r}",
                body=resp.text,
                url=url,
                method=method,
            ) from exc

    # -- routes ---------------------------------------------------------------------------

    def get_route(self, name: str) -> Route:
        """``GET /api/2.0/gateway/routes/{name}``."""
        return Route.from_dict(self.request("GET", CRUD_ROUTE_BASE + _quote(name)))

    def search_routes(self, page_token: str | None = None) -> PagedList[Route]:
        """One page of ``GET /api/2.0/gateway/routes/``; ``.token`` is the next page's token or None."""
        params = {"page_token": page_token} if page_token is not None else None
        data = self.request("GET", CRUD_ROUTE_BASE, params=params) or {}
        routes = [Route.from_dict(r) for r in data.get("routes") or []]
        return PagedList(routes, data.get("next_page_token") or None)

    def list_routes(self) -> Iterator[Route]:
        """Every route, following ``next_page_token`` across pages."""
        token: str | None = None
        seen: set[str] = set()
        while True:
            page = self.search_routes(page_token=token)
            yield from page
            if not page.token or page.token in seen:
                return
            seen.add(page.token)
            token = page.token

    def create_route(
        self,
        name: str,
        route_type: str | None = None,
        data: Mapping[str, Any] | None = None,
        model: Mapping[str, Any] | None = None,
    ) -> Route:
        """``POST /api/2.0/gateway/routes/`` (needs an admin key).

        Pass either the seed's ``data={"name", "provider", "<provider>_config": {...}}`` or MLflow's
        ``model={"name", "provider", "config": {...}}``; it is sent under the same key.
        """
        if (data is None) == (model is None):
            raise GatewayConfigError("create_route needs exactly one of data= or model=")
        if not route_type:
            raise GatewayConfigError("create_route needs route_type (e.g. 'llm/v1/chat')")
        body: dict[str, Any] = {"name": name, "route_type": route_type}
        if data is not None:
            body["data"] = dict(data)
        else:
            body["model"] = dict(model or {})
        _quote(name)
        return Route.from_dict(self.request("POST", CRUD_ROUTE_BASE, json_body=body))

    def delete_route(self, name: str) -> None:
        """``DELETE /api/2.0/gateway/routes/{name}`` (needs an admin key)."""
        self.request("DELETE", CRUD_ROUTE_BASE + _quote(name))

    # -- query ----------------------------------------------------------------------------

    def query(self, route: str | Route, data: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /gateway/{route}/invocations`` with ``data`` as the JSON body; returns the JSON.

        Completions ``{"prompt": ...}``, chat ``{"messages": [...]}``, embeddings ``{"text": ...}``,
        plus optional ``temperature``, ``max_tokens``, ``stop``, ``candidate_count``.
        """
        name = route.name if isinstance(route, Route) else route
        result = self.request("POST", QUERY_PREFIX + _quote(name) + QUERY_SUFFIX, json_body=dict(data))
        if not isinstance(result, dict):
            raise GatewayClientError(None, "INVALID_RESPONSE", f"expected a JSON object, got {result!r:.200}")
        return result

    # -- usage ----------------------------------------------------------------------------

    def get_usage(
        self,
        group_by: str | Sequence[str] = "team",
        start: date | str | None = None,
        end: date | str | None = None,
        *,
        team: int | str | None = None,
        route: str | None = None,
        consumer: str | None = None,
        environment: str | None = None,
        format: str = "json",
    ) -> UsageReport | str:
        """``GET /api/2.0/gateway/usage/``: calls, errors, tokens and cost per group over UTC days.

        ``group_by`` is one or more of team, consumer, route, model, day; ``start``/``end`` are days
        (both included; the server defaults to the last 30 days). A team's key sees its own team only
        (naming another raises PermissionDeniedError); an admin key sees all. Returns a
        :class:`UsageReport` (``cost_usd`` as Decimal), or the CSV text with ``format="csv"``.
        """
        if format not in ("json", "csv"):
            raise GatewayConfigError(f"format must be 'json' or 'csv', got {format!r}")
        params: dict[str, str] = {
            "group_by": group_by if isinstance(group_by, str) else ",".join(group_by),
            "format": format,
        }
        for name, value in (("start", start), ("end", end), ("team", team), ("route", route),
                            ("consumer", consumer), ("environment", environment)):
            if value is not None:
                params[name] = value.isoformat() if isinstance(value, date) else str(value)
        if format == "csv":
            return str(self.request("GET", USAGE_BASE, params=params, text=True))
        return UsageReport.from_dict(self.request("GET", USAGE_BASE, params=params) or {})

    # -- limits ---------------------------------------------------------------------------

    def set_limits(self, route: str, limits: list[dict[str, Any]]) -> LimitsConfig:
        """``POST /api/2.0/gateway/limits/`` (admin key): replace the route's limits with ``limits``, each
        ``{"key": "route" | "user" | "team", "renewal_period": "minute" | "day" | "month", "calls": N,
        "tokens": N, "usd": "12.50"}`` (calls, tokens and usd each optional)."""
        _quote(route)
        data = self.request("POST", LIMITS_BASE, json_body={"route": route, "limits": list(limits)})
        return LimitsConfig.from_dict(data or {}, route=route)

    def get_limits(self, route: str) -> LimitsConfig:
        """``GET /api/2.0/gateway/limits/{route}``: an admin key gets the configuration, any other key its
        own limits on the route with ``used``, ``remaining`` and ``reset_at``."""
        return LimitsConfig.from_dict(self.request("GET", LIMITS_BASE + _quote(route)) or {}, route=route)


# -- module-level (fluent) API: one shared client per base URL --------------------------------

_clients: dict[str, GatewayClient] = {}
_clients_lock = threading.Lock()


def _client() -> GatewayClient:
    uri = get_gateway_uri()
    key = f"{uri}|{_resolve_base_url(uri)}"
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = GatewayClient(uri)
        return client


def get_route(name: str) -> Route:
    return _client().get_route(name)


def search_routes(page_token: str | None = None) -> PagedList[Route]:
    """One page of routes (``.token`` for the next); :func:`list_routes` walks all pages."""
    return _client().search_routes(page_token=page_token)


def list_routes() -> list[Route]:
    """All routes, every page."""
    return list(_client().list_routes())


def create_route(
    name: str,
    route_type: str | None = None,
    data: Mapping[str, Any] | None = None,
    model: Mapping[str, Any] | None = None,
) -> Route:
    return _client().create_route(name, route_type=route_type, data=data, model=model)


def delete_route(name: str) -> None:
    _client().delete_route(name)


def query(route: str | Route, data: Mapping[str, Any]) -> dict[str, Any]:
    return _client().query(route, data)


def set_limits(route: str, limits: list[dict[str, Any]]) -> LimitsConfig:
    return _client().set_limits(route, limits)


def get_limits(route: str) -> LimitsConfig:
    return _client().get_limits(route)


def get_usage(
    group_by: str | Sequence[str] = "team",
    start: date | str | None = None,
    end: date | str | None = None,
    **kwargs: Any,
) -> UsageReport | str:
    """Usage and cost report (see :meth:`GatewayClient.get_usage`)."""
    return _client().get_usage(group_by, start, end, **kwargs)

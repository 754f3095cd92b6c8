"""Databricks Model Serving: `POST {workspace}/serving-endpoints/{endpoint}/invocations` with
`Authorization: Bearer <token>`, under MLflow's two provider names `databricks-model-serving` and
`databricks`.

Config keys. The seed's (and Databricks' own external-models docs') names for
`databricks-model-serving` are `databricks_workspace_url` and `databricks_api_token`; MLflow 3's
`DatabricksConfig` (used for both names) calls them `host` and `token`. Either pair is accepted:

- `databricks_workspace_url` or `host` (required): the workspace URL, e.g.
  `https://dbc-1234.cloud.databricks.com` (a trailing `/serving-endpoints` is ignored).
- `databricks_api_token` or `token` (secret, required): a personal access token (or any bearer
  token the workspace accepts).

MLflow 3's OAuth machine-to-machine fields (`client_id`, `client_secret`) are refused with a clear
message: the token exchange would be a second call per request, which this adapter does not make.

Wire format: the route's model name is the serving endpoint's name (the seed's MPT-7B endpoint is
a completions route). The bodies are the Foundation Model APIs' OpenAI-shaped ones without `model`
(the URL names the endpoint): chat `{messages, ...}`, completions `{prompt, ...}`, embeddings
`{input: [...]}`; answers are OpenAI's `chat.completion` / `text_completion` / embeddings list
shapes, parsed by `providers.openai`'s functions. A message `content` given as a list of parts (as
Databricks' reasoning models answer) keeps its text parts. Temperature is OpenAI's 0..2 (the
Foundation Model APIs' range), passed unchanged; `n`, `stop`, `top_p` pass through.
Custom-model endpoints may answer without `usage`: then it is counted with tiktoken and marked
estimated. Streams (`"stream": true`, chat and completions) are OpenAI's SSE chunks; no
`stream_options` is sent (custom endpoints may refuse unknown fields), and usage is read from
whichever chunk carries it.

Errors: Databricks answers `{"error_code": "...", "message": "..."}` (401/403 for a missing or
invalid token, 404 RESOURCE_DOES_NOT_EXIST for an unknown endpoint, 400 BAD_REQUEST, 429
REQUEST_LIMIT_EXCEEDED); statuses map as OpenAI's do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

from providers import openai
from providers.base import (
    GatewayError,
    Provider,
    ProviderConfigError,
    RouteType,
    StdRequest,
    StdResponse,
    Target,
    UpstreamRequest,
    UpstreamResponse,
)
from providers.common import load_json, optional_str
from providers.openai import OpenAIStreamParser
from providers.streaming import StreamParser
from providers.tokens import with_estimated_usage

URL_FIELDS = ("databricks_workspace_url", "host")
TOKEN_FIELDS = ("databricks_api_token", "token")
OAUTH_FIELDS = ("client_id", "client_secret")


@dataclass(frozen=True, slots=True)
class DatabricksSettings:
    workspace_url: str

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DatabricksSettings:
        url = _first(config, URL_FIELDS) or ""
        return cls(workspace_url=url.rstrip("/").removesuffix("/serving-endpoints").rstrip("/"))

    def invocations_url(self, endpoint: str) -> str:
        return f"{self.workspace_url}/serving-endpoints/{quote(endpoint, safe='')}/invocations"


# ---------------------------------------------------------------- mapping (pure)


def build_upstream_request(
    settings: DatabricksSettings, *, endpoint: str, token: str, request: StdRequest
) -> UpstreamRequest:
    """The invocations call for `request` on serving endpoint `endpoint`."""
    return UpstreamRequest(
        method="POST",
        url=settings.invocations_url(endpoint),
        headers={"Authorization": f"Bearer {token}"},
        json=openai.to_vendor_body(request),
    )


def from_vendor_body(request: StdRequest, data: Any, *, endpoint: str) -> StdResponse:
    """An endpoint's OpenAI-shaped answer → the standard response (usage estimated if absent)."""
    return with_estimated_usage(request, openai.from_vendor_body(request, data, default_model=endpoint))


class DatabricksStreamParser(OpenAIStreamParser):
    """OpenAI's chunks; an error event may also come in Databricks' `{"error_code", "message"}` shape."""

    def error_message(self, payload: Mapping[str, Any]) -> str | None:
        if "error_code" in payload:
            return str(payload.get("message") or payload["error_code"])
        return super().error_message(payload)


# ---------------------------------------------------------------- the providers


class DatabricksModelServingProvider(Provider):
    name: ClassVar[str] = "databricks-model-serving"
    route_types: ClassVar[frozenset[RouteType]] = frozenset(RouteType)
    secret_fields: ClassVar[tuple[str, ...]] = TOKEN_FIELDS
    config_fields: ClassVar[tuple[str, ...]] = URL_FIELDS
    # One of each pair is required: see validate_config.
    required_fields: ClassVar[tuple[str, ...]] = ()
    temperature_scale: ClassVar[float] = 1.0
    supports_streaming: ClassVar[bool] = True

    def validate_config(
        self, *, route_type: RouteType, config: Mapping[str, Any], secrets: Mapping[str, str]
    ) -> None:
        oauth = [name for name in OAUTH_FIELDS if name in config or name in secrets]
        if oauth:
            raise ProviderConfigError(
                f"Provider '{self.name}' does not support OAuth machine-to-machine credentials "
                f"({', '.join(oauth)}): set databricks_api_token to a personal access token instead."
            )
        super().validate_config(route_type=route_type, config=config, secrets=secrets)
        for names, what in ((URL_FIELDS, "workspace URL"), (TOKEN_FIELDS, "token")):
            values = {v for v in (optional_str(config.get(n)) or optional_str(secrets.get(n)) for n in names) if v}
            if not values:
                raise ProviderConfigError(
                    f"Provider '{self.name}' needs config field(s): {names[0]} (or {names[1]}): the {what}."
                )
            if len(values) > 1:
                raise ProviderConfigError(f"{names[0]} and {names[1]} differ: set only one of them.")
        parts = urlsplit(DatabricksSettings.from_config(config).workspace_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ProviderConfigError("databricks_workspace_url must be an http:// or https:// URL.")

    def build_request(self, target: Target, request: StdRequest) -> UpstreamRequest:
        token = _first(target.secrets, TOKEN_FIELDS) or ""
        return build_upstream_request(
            DatabricksSettings.from_config(target.config), endpoint=target.model, token=token, request=request
        )

    def parse_response(self, target: Target, request: StdRequest, response: UpstreamResponse) -> StdResponse:
        return from_vendor_body(request, load_json(response.body), endpoint=target.model)

    def map_error(self, target: Target, response: UpstreamResponse) -> GatewayError:
        return openai.error_from_vendor(response, target.secrets)

    def build_stream_request(self, target: Target, request: StdRequest) -> UpstreamRequest:
        plain = self.build_request(target, request)
        return UpstreamRequest(method=plain.method, url=plain.url, headers=plain.headers,
                               json={**plain.json, "stream": True})

    def stream_parser(self, target: Target, request: StdRequest) -> StreamParser:
        return DatabricksStreamParser(default_model=target.model, secrets=target.secrets)


class DatabricksProvider(DatabricksModelServingProvider):
    """MLflow's other name for the same provider."""

    name: ClassVar[str] = "databricks"


def _first(values: Mapping[str, Any], names: tuple[str, ...]) -> str | None:
    for name in names:
        if (value := optional_str(values.get(name))) is not None:
            return value
    return None


__all__ = ["DatabricksModelServingProvider", "DatabricksProvider", "DatabricksSettings"]

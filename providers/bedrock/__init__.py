"""Amazon Bedrock (`amazon-bedrock`, alias `bedrock`): InvokeModel over Bedrock Runtime, SigV4-signed.

Config keys are MLflow's `AmazonBedrockConfig.aws_config` fields (`mlflow/gateway/config.py`),
flattened into the route's config (`flatten_mlflow_config` turns MLflow's nested shape into it):

- `aws_region`: where the model runs, e.g. `us-east-1`; default `AWS_REGION` / `AWS_DEFAULT_REGION`
  of the gateway's environment (boto3's fallback, and so MLflow's). Required one way or the other.
- `aws_secret_access_key` (secret; the admin's "API key" field fills it), `aws_access_key_id`
  (secret: it names the AWS identity) and `aws_session_token` (secret, for temporary keys): the
  access key the calls are signed with.
- `aws_bearer_token` (secret): a Bedrock API key instead of an access key (MLflow's
  `AWSBearerToken`), sent as `Authorization: Bearer ...`; used only when no access key is set.
- `aws_role_arn`, `session_length_seconds` (default 900, 900..43200): assume this role with STS first
  (MLflow's `AWSRole`), from the route's access key if given, else the gateway's own AWS identity.
- `bedrock_api_base`: the endpoint, default `https://bedrock-runtime.{aws_region}.amazonaws.com`
  (a VPC endpoint, a proxy, or the test fake). Calls are signed for whatever host this names, with
  Bedrock Runtime's signing name `bedrock` and `aws_region`.

Without any credential the gateway's own AWS identity (botocore's default chain) is used, as
MLflow's `AWSBaseConfig` does. See `providers.bedrock.auth` for how temporary credentials are
fetched and cached.

Calls: `POST {base}/model/{modelId}/invoke` (and `/invoke-with-response-stream` to stream), the
model id path-escaped (`/` in an ARN as `%2F`; `:` literal, as the HTTP client sends it, so the
signed path is the sent path). The body is the model family's own (`providers.bedrock.families`),
the stream is the AWS event stream (`providers.bedrock.stream`), errors map as in
`providers.bedrock.errors`. Every family takes `temperature` in 0..1: the factor is 0.5.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

import orjson

from providers.base import (
    EmbeddingsRequest,
    GatewayError,
    InvalidRequest,
    Provider,
    ProviderConfigError,
    RouteType,
    StdRequest,
    StdResponse,
    Target,
    UpstreamRequest,
    UpstreamResponse,
    Usage,
)
from providers.bedrock.auth import authorize, identity_for, reset_credential_caches
from providers.bedrock.errors import error_from_vendor
from providers.bedrock.families import TEMPERATURE_SCALE, AnswerContext, Family, family_for
from providers.bedrock.settings import (
    PLAIN_KEYS,
    SECRET_KEYS,
    BedrockSettings,
    check_secret_combination,
    flatten_mlflow_config,
)
from providers.bedrock.stream import BedrockStreamParser
from providers.common import header, load_json
from providers.streaming import StreamParser

INVOKE = "invoke"
INVOKE_STREAM = "invoke-with-response-stream"
# Characters RFC 3986 allows literally in a path segment. The HTTP client (yarl) sends them
# unescaped whatever we write, so they stay literal here too and the signed path is the sent one.
_PATH_SAFE = ":@!$&'()*+,;="


def invoke_url(settings: BedrockSettings, model_id: str, *, stream: bool) -> str:
    """`{base}/model/{modelId}/invoke[-with-response-stream]`, the model id escaped as one segment."""
    return f"{settings.api_base}/model/{quote(model_id.strip(), safe=_PATH_SAFE)}/{INVOKE_STREAM if stream else INVOKE}"


def header_usage(headers: Mapping[str, str]) -> Usage | None:
    """Bedrock's `X-Amzn-Bedrock-Input-Token-Count` / `-Output-Token-Count` headers → Usage."""
    input_tokens = _count(header(headers, "X-Amzn-Bedrock-Input-Token-Count"))
    if input_tokens is None:
        return None
    output_tokens = _count(header(headers, "X-Amzn-Bedrock-Output-Token-Count"))
    return Usage(input_tokens=input_tokens, output_tokens=output_tokens or 0)


def _count(value: str | None) -> int | None:
    return int(value.strip()) if value is not None and value.strip().isdigit() else None


def build_upstream_request(
    settings: BedrockSettings, *, model: str, family: Family, body: dict[str, Any], secrets: Mapping[str, str],
    stream: bool,
) -> UpstreamRequest:
    """The signed InvokeModel (or InvokeModelWithResponseStream) request carrying `body`."""
    url = invoke_url(settings, model, stream=stream)
    headers = {"Content-Type": "application/json"}
    if stream:
        headers["X-Amzn-Bedrock-Accept"] = "application/json"
    else:
        headers["Accept"] = "application/json"
    identity = identity_for(
        secrets, region=settings.region, role_arn=settings.role_arn, session_seconds=settings.session_seconds
    )
    # The pooled client serialises `json` with orjson too: these are the bytes that go out.
    payload = orjson.dumps(body)
    signed = authorize(method="POST", url=url, headers=headers, body=payload, identity=identity,
                       region=settings.region)
    return UpstreamRequest(method="POST", url=url, headers=signed, json=body)


class AmazonBedrockProvider(Provider):
    name: ClassVar[str] = "amazon-bedrock"
    route_types: ClassVar[frozenset[RouteType]] = frozenset(RouteType)
    secret_fields: ClassVar[tuple[str, ...]] = SECRET_KEYS
    config_fields: ClassVar[tuple[str, ...]] = PLAIN_KEYS
    # aws_region may come from the environment; which credentials are needed depends on the mode.
    required_fields: ClassVar[tuple[str, ...]] = ()
    temperature_scale: ClassVar[float] = TEMPERATURE_SCALE
    supports_streaming: ClassVar[bool] = True


    def normalize_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return flatten_mlflow_config(config)

    def validate_config(
        self, *, route_type: RouteType, config: Mapping[str, Any], secrets: Mapping[str, str]
    ) -> None:
        if "aws_config" in config:
            raise ProviderConfigError(
                "Give MLflow's aws_config fields (aws_region, aws_access_key_id, ...) at the top level of the "
                "config: secret ones are stored encrypted, apart from the rest."
            )
        super().validate_config(route_type=route_type, config=config, secrets=secrets)
        BedrockSettings.from_config(config)
        check_secret_combination({**config, **secrets})

    def build_request(self, target: Target, request: StdRequest) -> UpstreamRequest:
        return self._request(target, request, stream=False)

    def build_stream_request(self, target: Target, request: StdRequest) -> UpstreamRequest:
        if isinstance(request, EmbeddingsRequest):
            raise InvalidRequest("Embeddings do not stream.")
        return self._request(target, request, stream=True)

    def _request(self, target: Target, request: StdRequest, *, stream: bool) -> UpstreamRequest:
        settings = BedrockSettings.from_config(target.config)
        family = family_for(target.model)
        family.check_route_type(request, target.model)
        return build_upstream_request(
            settings, model=target.model, family=family, body=family.request_body(request),
            secrets=target.secrets, stream=stream,
        )

    def parse_response(self, target: Target, request: StdRequest, response: UpstreamResponse) -> StdResponse:
        data = load_json(response.body)
        if not isinstance(data, Mapping):
            raise TypeError("response body is not a JSON object")
        context = AnswerContext(
            model=target.model,
            header_usage=header_usage(response.headers),
            request_id=header(response.headers, "x-amzn-RequestId"),
        )
        return family_for(target.model).parse(request, data, context)

    def map_error(self, target: Target, response: UpstreamResponse) -> GatewayError:
        return error_from_vendor(response, target.secrets)

    def stream_parser(self, target: Target, request: StdRequest) -> StreamParser:
        family = family_for(target.model).stream(request)
        return BedrockStreamParser(family=family, secrets=target.secrets, model=target.model)


class BedrockProvider(AmazonBedrockProvider):
    """The same provider under MLflow's other name for it."""

    name: ClassVar[str] = "bedrock"


__all__ = [
    "AmazonBedrockProvider",
    "BedrockProvider",
    "flatten_mlflow_config",
    "reset_credential_caches",
]

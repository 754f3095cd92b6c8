"""The standard request/response model every API family maps to, and the provider interface.

Nothing here imports Django or touches the network. A provider turns a standard request into an
`UpstreamRequest` (plain data) and the vendor's answer back into a standard response; the pooled
client in `providers.client` does the I/O.

Temperature is carried on OpenAI's 0..2 scale; each provider rescales to its vendor's range.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from providers.streaming import StreamChunk, StreamParser


class RouteType(enum.StrEnum):
    COMPLETIONS = "llm/v1/completions"
    CHAT = "llm/v1/chat"
    EMBEDDINGS = "llm/v1/embeddings"


class Secrets(Mapping[str, str]):
    """A read-only mapping of credential fields whose repr never shows a value."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self._values = dict(values or {})

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Secrets({', '.join(f'{k}=***' for k in self._values)})"

    __str__ = __repr__

    def values_to_redact(self) -> list[str]:
        return [v for v in self._values.values() if v]


@dataclass(frozen=True, slots=True)
class Target:
    """One upstream model a route sends calls to: provider, model, non-secret config, secrets."""

    provider: str
    model: str
    config: Mapping[str, Any] = field(default_factory=dict)
    secrets: Secrets = field(default_factory=Secrets)


# ---------------------------------------------------------------- standard requests


@dataclass(slots=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(slots=True)
class CommonParams:
    temperature: float | None = None  # OpenAI scale, 0..2
    max_tokens: int | None = None
    n: int = 1
    stop: list[str] | None = None
    top_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


@dataclass(slots=True)
class ChatRequest:
    messages: list[ChatMessage]
    params: CommonParams = field(default_factory=CommonParams)
    route_type: ClassVar[RouteType] = RouteType.CHAT


@dataclass(slots=True)
class CompletionsRequest:
    prompt: str
    params: CommonParams = field(default_factory=CommonParams)
    route_type: ClassVar[RouteType] = RouteType.COMPLETIONS


@dataclass(slots=True)
class EmbeddingsRequest:
    inputs: list[str]
    route_type: ClassVar[RouteType] = RouteType.EMBEDDINGS


StdRequest = ChatRequest | CompletionsRequest | EmbeddingsRequest


# ---------------------------------------------------------------- standard responses


@dataclass(slots=True)
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    estimated: bool = False

    def __post_init__(self) -> None:
        if self.total_tokens is None and self.input_tokens is not None:
            self.total_tokens = self.input_tokens + (self.output_tokens or 0)


FinishReason = Literal["stop", "length", "content_filter", "tool_calls"] | str | None


@dataclass(slots=True)
class ChatChoice:
    index: int
    message: ChatMessage
    finish_reason: FinishReason = None


@dataclass(slots=True)
class CompletionChoice:
    index: int
    text: str
    finish_reason: FinishReason = None


@dataclass(slots=True)
class ChatResponse:
    model: str
    choices: list[ChatChoice]
    usage: Usage
    id: str | None = None
    created: int | None = None
    route_type: ClassVar[RouteType] = RouteType.CHAT


@dataclass(slots=True)
class CompletionsResponse:
    model: str
    choices: list[CompletionChoice]
    usage: Usage
    id: str | None = None
    created: int | None = None
    route_type: ClassVar[RouteType] = RouteType.COMPLETIONS


@dataclass(slots=True)
class EmbeddingsResponse:
    model: str
    embeddings: list[list[float]]
    usage: Usage
    route_type: ClassVar[RouteType] = RouteType.EMBEDDINGS


StdResponse = ChatResponse | CompletionsResponse | EmbeddingsResponse


# ---------------------------------------------------------------- upstream I/O as plain data


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    method: str
    url: str
    headers: Mapping[str, str]
    json: Any = None
    params: Mapping[str, str] | None = None

    def __repr__(self) -> str:  # headers carry credentials: never print them
        return f"UpstreamRequest({self.method} {self.url})"


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes


# ---------------------------------------------------------------- errors


class GatewayError(Exception):
    """An error with a stable code and HTTP status; each API family renders it in its own shape.

    `message` is shown to the caller, so it must never contain a credential: providers build it with
    `redact()`.
    """

    status: int = 500
    code: str = "INTERNAL_ERROR"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.retry_after = retry_after


class InvalidRequest(GatewayError):
    status = 400
    code = "INVALID_PARAMETER_VALUE"


class ProviderConfigError(GatewayError):
    """A route's provider configuration is invalid (raised when the route is created or edited)."""

    status = 400
    code = "INVALID_PARAMETER_VALUE"


class UpstreamError(GatewayError):
    status = 502
    code = "UPSTREAM_ERROR"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "UPSTREAM_TIMEOUT"


class UpstreamUnavailable(UpstreamError):
    """The connection failed or was closed before a full answer arrived."""

    code = "UPSTREAM_UNAVAILABLE"


class UpstreamBadResponse(UpstreamError):
    """The vendor answered 2xx with a body we cannot parse."""

    code = "UPSTREAM_BAD_RESPONSE"


_KEY_LIKE = re.compile(r"\b(sk|pk|key|gw|org)-[A-Za-z0-9_*.\-]{4,}")


def redact(text: str, secrets: Secrets) -> str:
    """Remove every secret value (and any key-looking token) from a vendor message."""
    # Key-looking tokens first, whole, so a partially masked echo ("sk-abc12****wxyz") goes entirely.
    text = _KEY_LIKE.sub("[REDACTED]", text)
    for value in secrets.values_to_redact():
        text = text.replace(value, "[REDACTED]")
        if len(value) > 8:  # vendors echo keys partially masked: "sk-abc...wxyz"
            text = text.replace(value[:6], "[REDACTED]").replace(value[-4:], "[REDACTED]")
    return text


# ---------------------------------------------------------------- the provider interface


class Provider:
    """One vendor. Subclasses set the class attributes and implement the mapping functions.

    `secret_fields` are config keys stored encrypted (the first is the primary one the admin's
    "API key" field fills); `config_fields` are the non-secret keys a route may set; `required_fields`
    must be present (secret or not). Config keys are MLflow's.
    """

    name: ClassVar[str]
    route_types: ClassVar[frozenset[RouteType]]
    secret_fields: ClassVar[tuple[str, ...]] = ()
    config_fields: ClassVar[tuple[str, ...]] = ()
    required_fields: ClassVar[tuple[str, ...]] = ()
    # Factor from OpenAI's 0..2 temperature scale to the vendor's.
    temperature_scale: ClassVar[float] = 1.0
    needs_network: ClassVar[bool] = True

    def normalize_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """MLflow's config shape for this vendor → the flat keys stored (e.g. Bedrock's aws_config)."""
        return dict(config)

    def validate_config(self, *, route_type: RouteType, config: Mapping[str, Any],
                        secrets: Mapping[str, str]) -> None:
        """Raise ProviderConfigError unless this provider can serve `route_type` with this config."""
        if route_type not in self.route_types:
            offered = ", ".join(sorted(self.route_types))
            raise ProviderConfigError(
                f"Provider '{self.name}' does not support route type '{route_type}' (it offers: {offered})."
            )
        allowed = set(self.config_fields) | set(self.secret_fields)
        unknown = sorted(set(config) - allowed)
        if unknown:
            raise ProviderConfigError(
                f"Unknown config field(s) for provider '{self.name}': {', '.join(unknown)}."
            )
        missing = [f for f in self.required_fields if not (config.get(f) or secrets.get(f))]
        if missing:
            raise ProviderConfigError(
                f"Provider '{self.name}' needs config field(s): {', '.join(missing)}."
            )

    def build_request(self, target: Target, request: StdRequest) -> UpstreamRequest:
        raise NotImplementedError

    def parse_response(self, target: Target, request: StdRequest, response: UpstreamResponse) -> StdResponse:
        raise NotImplementedError

    def map_error(self, target: Target, response: UpstreamResponse) -> GatewayError:
        raise NotImplementedError

    def answer_locally(self, target: Target, request: StdRequest) -> StdResponse:
        """For providers with `needs_network = False` (the built-in mock): answer without I/O."""
        raise NotImplementedError

    # ---- streaming (chat and completions); a provider that streams sets supports_streaming
    supports_streaming: ClassVar[bool] = False

    def build_stream_request(self, target: Target, request: StdRequest) -> UpstreamRequest:
        """The vendor request that streams `request` (asking for final usage where the vendor can)."""
        raise InvalidRequest(f"Provider '{self.name}' does not stream.")

    def stream_parser(self, target: Target, request: StdRequest) -> StreamParser:
        """A fresh parser of the vendor's stream framing for one call."""
        raise InvalidRequest(f"Provider '{self.name}' does not stream.")

    def stream_locally(self, target: Target, request: StdRequest) -> list[StreamChunk]:
        """For providers with `needs_network = False`: the whole stream, chunk by chunk."""
        raise NotImplementedError

"""Google's Gemini API (generativelanguage.googleapis.com), for chat, completions and embeddings.

Config keys (`gemini_api_key` is MLflow's, `GeminiConfig`; the other is ours):

- `gemini_api_key` (secret, required): sent as the `x-goog-api-key` header, as MLflow and Google's
  SDKs do. Never as `?key=`: a query string ends up in access logs and exception texts.
- `gemini_api_base`: the API version root, default `https://generativelanguage.googleapis.com/v1beta`
  (MLflow's fixed URL); set it for a proxy or the test fake. The adapter appends
  `/models/{model}:{method}`, so a base ending in `/models` is refused rather than doubled.

Endpoints: chat and completions `POST {base}/models/{model}:generateContent`; streaming
`:streamGenerateContent?alt=sse` (Server-Sent Events; without `alt=sse` Gemini streams one JSON
array); embeddings `:batchEmbedContents` (one call for every input, at most 100 of them). A model
given as `models/gemini-2.0-flash` works as well as `gemini-2.0-flash`.

Mapping (the standard request is OpenAI-shaped; Gemini's is not):

- Roles: `user` stays `user`, `assistant` becomes `model` (the only two roles `contents` takes).
  System messages, wherever they are, go to `systemInstruction`, one part each, as MLflow does.
  Consecutive turns with the same role (two user turns once a system message between them is
  lifted, say) become one turn with one part per message: older Gemini models answer 400 "Please
  ensure that multiturn requests alternate between user and model", and parts keep the messages
  apart without inventing a separator. Empty messages are left out (Gemini refuses an empty text
  part); a request with no user or assistant text left is refused with 400 before any call.
- Completions: the prompt is one user turn, as MLflow does.
- `generationConfig`: `temperature` as is (OpenAI's 0..2 is Gemini's documented 0.0..2.0, and
  MLflow passes it unchanged); `max_tokens` → `maxOutputTokens`; `top_p` → `topP`; `stop` →
  `stopSequences`; `n` → `candidateCount` (only when not 1: models that cannot make several
  candidates answer 400, which reaches the caller as UPSTREAM_BAD_REQUEST); non-zero
  `presence_penalty`/`frequency_penalty` → `presencePenalty`/`frequencyPenalty` (a zero penalty,
  which many OpenAI clients send by default, is a no-op and is left out: some models refuse the
  field outright).
- Answers: each candidate's text parts are joined (`thought` parts left out). `finishReason` STOP →
  `stop`, MAX_TOKENS → `length`; SAFETY, RECITATION, BLOCKLIST, PROHIBITED_CONTENT, SPII and
  IMAGE_SAFETY → `content_filter`, with the candidate's text emptied (Gemini withheld or flagged
  it); any other value is passed on lower-cased, as MLflow does.
- A blocked prompt (`promptFeedback.blockReason`, no candidates) is a 400 with code
  CONTENT_BLOCKED naming the reason: the caller's prompt was refused, the call did not fail.
- Usage from `usageMetadata`: input = `promptTokenCount` (+ `toolUsePromptTokenCount`), output =
  `candidatesTokenCount` + `thoughtsTokenCount` (Gemini 2.5's thinking is billed as output), total =
  `totalTokenCount`. If an answer has no `usageMetadata`, tokens are counted with tiktoken and
  marked estimated; embeddings always are (Gemini's embedding answers report no usage).
- Streaming: every SSE event is a whole `GenerateContentResponse` holding the next piece of text.
  The usage goes on the chunk that carries a finish reason: Gemini's earlier events may carry
  partial counts, and a stream cut short is better counted from what was sent than from those.
  An `{"error": ...}` event mid-stream raises UpstreamError.

Errors: Google answers `{"error": {"code", "message", "status", "details"}}`. A wrong or expired key
comes as 400 INVALID_ARGUMENT with reason API_KEY_INVALID (and a DebugInfo detail that echoes the
key): that, and 401/403, is 502 UPSTREAM_AUTH_FAILED with a fixed message, not a 400 that blames the
caller. 400 FAILED_PRECONDITION (the API not offered in the gateway's region, billing not enabled)
is the gateway's problem, so 502 UPSTREAM_ERROR. Other 400/404/413/422 → 400 UPSTREAM_BAD_REQUEST
with Google's message; 429 RESOURCE_EXHAUSTED → 502 UPSTREAM_RATE_LIMITED, with `retry_after` from a
Retry-After header or else the RetryInfo detail's `retryDelay`; anything else → 502 UPSTREAM_ERROR.
Messages are always redacted, including any Google API key (`AIza...`) they mention.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import orjson

from providers.base import (
    ChatChoice,
    ChatMessage,
    ChatRequest,
    ChatResponse,
    CommonParams,
    CompletionChoice,
    CompletionsRequest,
    CompletionsResponse,
    EmbeddingsRequest,
    EmbeddingsResponse,
    GatewayError,
    InvalidRequest,
    Provider,
    ProviderConfigError,
    RouteType,
    Secrets,
    StdRequest,
    StdResponse,
    Target,
    UpstreamError,
    UpstreamRequest,
    UpstreamResponse,
    Usage,
)
from providers.common import (
    auth_failed_error,
    json_object,
    load_json,
    map_vendor_error,
    optional_str,
    prompt_as_chat,
    rate_limited_error,
    retry_after_seconds,
    safe_vendor_message,
    with_detail,
)
from providers.streaming import ChoiceDelta, ChunkParser, SSEEvent, StreamChunk, StreamParser
from providers.tokens import estimate_usage

DEFAULT_API_BASE = "https://generativelanguage.googleapis.com/v1beta"
KEY_HEADER = "x-goog-api-key"
MAX_EMBED_BATCH = 100  # Gemini: "at most 100 requests can be in one batch"
ROLES = {"user": "user", "assistant": "model"}
CONTENT_FILTER_REASONS = frozenset(
    {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"}
)
FINISH_REASONS = {"STOP": "stop", "MAX_TOKENS": "length", **dict.fromkeys(CONTENT_FILTER_REASONS, "content_filter")}
_GOOGLE_API_KEY = re.compile(r"AIza[0-9A-Za-z_\-]{20,}")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


@dataclass(frozen=True, slots=True)
class GeminiSettings:
    """The non-secret part of a route's config, resolved with its default."""

    api_base: str = DEFAULT_API_BASE

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> GeminiSettings:
        base = str(config.get("gemini_api_base") or "").strip().rstrip("/") or DEFAULT_API_BASE
        return cls(api_base=base)

    def url(self, model: str, method: str) -> str:
        """`{base}/models/{model}:{method}`; the model is path-quoted, a `models/` prefix dropped."""
        name = model.strip().removeprefix("models/")
        return f"{self.api_base}/models/{quote(name, safe='')}:{method}"


# ---------------------------------------------------------------- request mapping (pure)


def generation_config(params: CommonParams) -> dict[str, Any]:
    """CommonParams → Gemini's `generationConfig` fields; unset values (and zero penalties) left out."""
    config: dict[str, Any] = {}
    if params.temperature is not None:
        config["temperature"] = params.temperature * GeminiProvider.temperature_scale
    if params.max_tokens is not None:
        config["maxOutputTokens"] = params.max_tokens
    if params.top_p is not None:
        config["topP"] = params.top_p
    if params.stop:
        config["stopSequences"] = list(params.stop)
    if params.n != 1:
        config["candidateCount"] = params.n
    if params.presence_penalty:
        config["presencePenalty"] = params.presence_penalty
    if params.frequency_penalty:
        config["frequencyPenalty"] = params.frequency_penalty
    return config


def messages_to_vendor(messages: Sequence[ChatMessage]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Standard messages → (`systemInstruction`, `contents`) as generateContent wants them.

    Roles become `user`/`model`, system messages are lifted into the instruction, same-role turns
    are merged part by part, empty messages left out. Raises InvalidRequest for an unknown role or
    when no user/assistant text is left.
    """
    system: list[dict[str, str]] = []
    contents: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            if message.content:
                system.append({"text": message.content})
            continue
        role = ROLES.get(message.role)
        if role is None:
            raise InvalidRequest(
                f"Message role '{message.role}' is not supported by provider 'gemini' "
                "(use system, user or assistant)."
            )
        if not message.content:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].append({"text": message.content})
        else:
            contents.append({"role": role, "parts": [{"text": message.content}]})
    if not contents:
        raise InvalidRequest("Provider 'gemini' needs at least one non-empty user or assistant message.")
    return ({"parts": system} if system else None), contents


def chat_to_vendor(request: ChatRequest) -> dict[str, Any]:
    system, contents = messages_to_vendor(request.messages)
    body: dict[str, Any] = {"contents": contents}
    if system is not None:
        body["systemInstruction"] = system
    if config := generation_config(request.params):
        body["generationConfig"] = config
    return body


def completions_to_vendor(request: CompletionsRequest) -> dict[str, Any]:
    """A completions prompt is one user turn."""
    return chat_to_vendor(prompt_as_chat(request))


def embeddings_to_vendor(request: EmbeddingsRequest, *, model: str) -> dict[str, Any]:
    """`batchEmbedContents` body; InvalidRequest for no input, an empty text, or over 100 inputs."""
    if not request.inputs:
        raise InvalidRequest("Provider 'gemini' needs at least one text to embed.")
    if len(request.inputs) > MAX_EMBED_BATCH:
        raise InvalidRequest(
            f"Provider 'gemini' embeds at most {MAX_EMBED_BATCH} texts per call (got {len(request.inputs)})."
        )
    if any(not text for text in request.inputs):
        raise InvalidRequest("Provider 'gemini' cannot embed an empty text.")
    name = f"models/{model.strip().removeprefix('models/')}"
    return {"requests": [{"model": name, "content": {"parts": [{"text": text}]}} for text in request.inputs]}


def build_upstream_request(
    settings: GeminiSettings, *, model: str, api_key: str, request: StdRequest, stream: bool = False
) -> UpstreamRequest:
    """The HTTP request for `request` (streamed with `alt=sse` if `stream`). The key goes in a header."""
    headers = {KEY_HEADER: api_key}
    params: dict[str, str] | None = None
    if isinstance(request, EmbeddingsRequest):
        if stream:
            raise InvalidRequest("Embeddings cannot be streamed.")
        return UpstreamRequest(
            method="POST",
            url=settings.url(model, "batchEmbedContents"),
            headers=headers,
            json=embeddings_to_vendor(request, model=model),
        )
    body = chat_to_vendor(request) if isinstance(request, ChatRequest) else completions_to_vendor(request)
    if stream:
        method, params = "streamGenerateContent", {"alt": "sse"}
    else:
        method = "generateContent"
    return UpstreamRequest(method="POST", url=settings.url(model, method), headers=headers, json=body, params=params)


# ---------------------------------------------------------------- response parsing (pure)


def finish_reason_from_vendor(reason: Any) -> str | None:
    """Gemini's `finishReason` → OpenAI's; unknown values are passed on lower-cased."""
    if reason is None:
        return None
    reason = str(reason).upper()
    return FINISH_REASONS.get(reason, reason.lower())


def candidate_text(candidate: Mapping[str, Any]) -> str:
    """The candidate's text parts joined (thought summaries left out); "" when it has no content."""
    content = candidate.get("content")
    if not isinstance(content, Mapping):
        return ""
    parts = content.get("parts") or []
    if not isinstance(parts, list):
        raise TypeError("content.parts is not a list")
    return "".join(
        str(part.get("text") or "") for part in parts if isinstance(part, Mapping) and not part.get("thought")
    )


def usage_from_vendor(data: Mapping[str, Any]) -> Usage | None:
    """`usageMetadata` → Usage (thinking counts as output); None when the answer has none."""
    meta = data.get("usageMetadata")
    if not isinstance(meta, Mapping):
        return None
    prompt = _optional_int(meta.get("promptTokenCount"))
    if prompt is None:
        return None
    prompt += _optional_int(meta.get("toolUsePromptTokenCount")) or 0
    output = (_optional_int(meta.get("candidatesTokenCount")) or 0) + (
        _optional_int(meta.get("thoughtsTokenCount")) or 0
    )
    return Usage(input_tokens=prompt, output_tokens=output, total_tokens=_optional_int(meta.get("totalTokenCount")))


def raise_if_prompt_blocked(data: Mapping[str, Any]) -> None:
    """A prompt Gemini refused to answer (`promptFeedback.blockReason`, no candidates) → 400."""
    feedback = data.get("promptFeedback")
    reason = feedback.get("blockReason") if isinstance(feedback, Mapping) else None
    if reason and not data.get("candidates"):
        raise InvalidRequest(
            f"The upstream provider blocked the prompt (reason: {reason}); no answer was generated.",
            code="CONTENT_BLOCKED",
        )


@dataclass(slots=True)
class _Candidate:
    index: int
    text: str
    finish_reason: str | None


def candidates_from_vendor(data: Mapping[str, Any]) -> list[_Candidate]:
    """The answer's candidates in index order. Raises InvalidRequest (CONTENT_BLOCKED) for a blocked
    prompt, and KeyError/TypeError for a body that is no answer at all."""
    raise_if_prompt_blocked(data)
    raw = data["candidates"]
    if not isinstance(raw, list) or not raw:
        raise TypeError("candidates is not a non-empty list")
    if not all(isinstance(candidate, Mapping) for candidate in raw):
        raise TypeError("candidate is not an object")
    candidates = []
    for index, candidate in zip(candidate_indices(raw), raw, strict=True):
        finish = finish_reason_from_vendor(candidate.get("finishReason"))
        text = "" if finish == "content_filter" else candidate_text(candidate)
        candidates.append(_Candidate(index=index, text=text, finish_reason=finish))
    return sorted(candidates, key=lambda c: c.index)


def candidate_indices(candidates: Sequence[Mapping[str, Any]]) -> list[int]:
    """Each candidate's `index`. Proto3 JSON leaves out a zero, so a candidate without one is
    candidate 0; should that give duplicates (a server that sends no indices at all), the order."""
    indices = [_optional_int(c.get("index")) or 0 for c in candidates]
    return indices if len(set(indices)) == len(indices) else list(range(len(candidates)))


def chat_from_vendor(data: Mapping[str, Any], *, default_model: str, request: ChatRequest) -> ChatResponse:
    candidates = candidates_from_vendor(data)
    choices = [
        ChatChoice(index=c.index, message=ChatMessage(role="assistant", content=c.text), finish_reason=c.finish_reason)
        for c in candidates
    ]
    usage = usage_from_vendor(data) or estimate_usage(request, [c.text for c in candidates])
    return ChatResponse(
        model=str(data.get("modelVersion") or default_model),
        choices=choices,
        usage=usage,
        id=optional_str(data.get("responseId")),
    )


def completions_from_vendor(
    data: Mapping[str, Any], *, default_model: str, request: CompletionsRequest
) -> CompletionsResponse:
    candidates = candidates_from_vendor(data)
    choices = [CompletionChoice(index=c.index, text=c.text, finish_reason=c.finish_reason) for c in candidates]
    usage = usage_from_vendor(data) or estimate_usage(request, [c.text for c in candidates])
    return CompletionsResponse(
        model=str(data.get("modelVersion") or default_model),
        choices=choices,
        usage=usage,
        id=optional_str(data.get("responseId")),
    )


def embeddings_from_vendor(data: Mapping[str, Any], *, model: str, request: EmbeddingsRequest) -> EmbeddingsResponse:
    """`{"embeddings": [{"values": [...]}]}` (in input order) → EmbeddingsResponse, usage counted.

    ValueError unless there is one vector per input.
    """
    items = data["embeddings"]
    if not isinstance(items, list) or len(items) != len(request.inputs):
        raise ValueError(f"expected {len(request.inputs)} embeddings")
    return EmbeddingsResponse(
        model=model,
        embeddings=[[float(x) for x in item["values"]] for item in items],
        usage=estimate_usage(request, []),
    )


def from_vendor_body(request: StdRequest, data: Any, *, default_model: str) -> StdResponse:
    if not isinstance(data, Mapping):
        raise TypeError("response body is not a JSON object")
    if isinstance(request, ChatRequest):
        return chat_from_vendor(data, default_model=default_model, request=request)
    if isinstance(request, CompletionsRequest):
        return completions_from_vendor(data, default_model=default_model, request=request)
    return embeddings_from_vendor(data, model=default_model, request=request)


# ---------------------------------------------------------------- errors (pure)


def _error_object(body: bytes) -> Mapping[str, Any]:
    data = json_object(body)
    error = data.get("error") if data is not None else None
    return error if isinstance(error, Mapping) else {}


def _details(error: Mapping[str, Any], kind: str) -> list[Mapping[str, Any]]:
    details = error.get("details")
    if not isinstance(details, list):
        return []
    return [d for d in details if isinstance(d, Mapping) and str(d.get("@type", "")).endswith(kind)]


def is_key_rejected(error: Mapping[str, Any]) -> bool:
    """Google's way of saying the API key is wrong: 400 with an `API_KEY_*` ErrorInfo reason."""
    if any(str(d.get("reason", "")).startswith("API_KEY_") for d in _details(error, "google.rpc.ErrorInfo")):
        return True
    return str(error.get("message", "")).startswith(("API key not valid", "API key expired"))


def retry_delay_seconds(error: Mapping[str, Any]) -> float | None:
    """The RetryInfo detail's `retryDelay` (a protobuf Duration such as "38s" or "0.5s")."""
    for detail in _details(error, "google.rpc.RetryInfo"):
        match = _DURATION.match(str(detail.get("retryDelay", "")))
        if match:
            return float(match.group(1))
    return None


def safe_message(text: Any, secrets: Secrets) -> str:
    """A Google message fit for a caller: Google API keys and the route's secrets removed, capped."""
    if not isinstance(text, str):
        return ""
    return safe_vendor_message(_GOOGLE_API_KEY.sub("[REDACTED]", text), secrets)


def error_from_vendor(response: UpstreamResponse, secrets: Secrets) -> GatewayError:
    """A Google error answer → the GatewayError callers see (never with a credential in it)."""
    status = response.status
    error = _error_object(response.body)
    if status == 400 and is_key_rejected(error):
        # The DebugInfo detail of a 400 API_KEY_INVALID echoes the key: none of the body is used.
        return auth_failed_error()
    message = safe_message(error.get("message"), secrets)
    if status == 400 and error.get("status") == "FAILED_PRECONDITION":
        return UpstreamError(
            with_detail("The upstream provider cannot serve this route as configured", message),
            code="UPSTREAM_ERROR",
        )
    if status == 429:
        # RESOURCE_EXHAUSTED: without a Retry-After header, the RetryInfo detail says how long to wait.
        retry_after = retry_after_seconds(response.headers)
        return rate_limited_error(message, retry_after if retry_after is not None else retry_delay_seconds(error))
    return map_vendor_error(response, secrets, message=message, retry_after_on_error=True)


# ---------------------------------------------------------------- the provider


class GeminiProvider(Provider):
    name: ClassVar[str] = "gemini"
    route_types: ClassVar[frozenset[RouteType]] = frozenset(RouteType)
    secret_fields: ClassVar[tuple[str, ...]] = ("gemini_api_key",)
    config_fields: ClassVar[tuple[str, ...]] = ("gemini_api_base",)
    required_fields: ClassVar[tuple[str, ...]] = ("gemini_api_key",)
    # OpenAI's 0..2 is Gemini's 0.0..2.0.
    temperature_scale: ClassVar[float] = 1.0
    supports_streaming: ClassVar[bool] = True

    def validate_config(
        self, *, route_type: RouteType, config: Mapping[str, Any], secrets: Mapping[str, str]
    ) -> None:
        super().validate_config(route_type=route_type, config=config, secrets=secrets)
        settings = GeminiSettings.from_config(config)
        parts = urlsplit(settings.api_base)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ProviderConfigError("gemini_api_base must be an http:// or https:// URL.")
        if parts.query or parts.path.rstrip("/").endswith("/models"):
            raise ProviderConfigError(
                f"gemini_api_base is the API version root (e.g. {DEFAULT_API_BASE}): leave out "
                "'/models' and any query, the gateway adds '/models/{model}:{method}'."
            )

    def _request(self, target: Target, request: StdRequest, *, stream: bool) -> UpstreamRequest:
        return build_upstream_request(
            GeminiSettings.from_config(target.config),
            model=target.model,
            api_key=(target.secrets.get("gemini_api_key") or "").strip(),
            request=request,
            stream=stream,
        )

    def build_request(self, target: Target, request: StdRequest) -> UpstreamRequest:
        return self._request(target, request, stream=False)

    def parse_response(self, target: Target, request: StdRequest, response: UpstreamResponse) -> StdResponse:
        return from_vendor_body(request, load_json(response.body), default_model=target.model)

    def map_error(self, target: Target, response: UpstreamResponse) -> GatewayError:
        return error_from_vendor(response, target.secrets)

    def build_stream_request(self, target: Target, request: StdRequest) -> UpstreamRequest:
        # Gemini reports usageMetadata in the stream unasked.
        return self._request(target, request, stream=True)

    def stream_parser(self, target: Target, request: StdRequest) -> StreamParser:
        return GeminiStreamParser(
            default_model=target.model, secrets=target.secrets, chat=isinstance(request, ChatRequest)
        )


class GeminiStreamParser(ChunkParser):
    """`streamGenerateContent?alt=sse`: each `data:` event is a GenerateContentResponse carrying the
    next text; no end marker. A blocked prompt (first event) raises InvalidRequest CONTENT_BLOCKED,
    an `error` event UpstreamError."""

    def __init__(self, *, default_model: str, secrets: Secrets, chat: bool) -> None:
        super().__init__()
        self._default_model = default_model
        self._secrets = secrets
        self._chat = chat
        self._started: set[int] = set()
        self._usage: Usage | None = None
        self._finished = False

    def event_chunk(self, event: SSEEvent) -> StreamChunk | None:
        if not event.data.strip():
            return None
        payload = orjson.loads(event.data)
        if not isinstance(payload, Mapping):
            raise TypeError("stream event is not a JSON object")
        if "error" in payload:
            error = payload["error"] if isinstance(payload["error"], Mapping) else {}
            message = safe_message(error.get("message"), self._secrets) or "stream error"
            raise UpstreamError(f"The upstream provider failed mid-stream: {message}")
        raise_if_prompt_blocked(payload)
        usage = usage_from_vendor(payload)
        self._usage = usage or self._usage
        deltas = []
        finished = False
        candidates = payload.get("candidates") or []
        if not isinstance(candidates, list) or not all(isinstance(c, Mapping) for c in candidates):
            raise TypeError("candidates is not a list of objects")
        for index, candidate in zip(candidate_indices(candidates), candidates, strict=True):
            finish = finish_reason_from_vendor(candidate.get("finishReason"))
            text = "" if finish == "content_filter" else candidate_text(candidate)
            role = None
            if self._chat and index not in self._started:
                role = "assistant"
            self._started.add(index)
            finished = finished or finish is not None
            if text or finish or role:
                deltas.append(ChoiceDelta(index=index, text=text, role=role, finish_reason=finish))
        # Usage sent after the finish (in an event of its own) replaces what went with the finish.
        send_usage = finished or (self._finished and usage is not None)
        self._finished = self._finished or finished
        if not deltas and not send_usage:
            return None
        return StreamChunk(
            deltas=deltas,
            usage=self._usage if send_usage else None,
            model=str(payload.get("modelVersion") or self._default_model),
            id=optional_str(payload.get("responseId")),
        )


def _optional_int(value: Any) -> int | None:
    """An int from a JSON number or a numeric string (proto3 JSON writes int64 counts as strings)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None

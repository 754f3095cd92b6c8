"""Bedrock's model families: each takes its own InvokeModel body and answers in its own shape.

The family comes from the model id's prefix (`anthropic.`, `cohere.`, `amazon.titan-`, `meta.llama`),
after any cross-region inference-profile prefix (`us.`, `eu.`, `apac.`, `global.`...) and, for an
ARN, after its last `/`. After Bedrock's model parameter references:

- Anthropic Claude (chat, completions): the Messages API body with `anthropic_version:
  bedrock-2023-05-31` and no `model`; the answer and stream events are Anthropic's own.
- Cohere Command R / R+ (chat, completions): `message` (the last user turn), `chat_history`
  (USER/CHATBOT), `preamble` (system); the answer has `text` and `finish_reason`, no usage.
- Cohere Embed (embeddings): `texts` + `input_type` (search_document) → `embeddings`.
- Amazon Titan Text (chat, completions): `inputText` + `textGenerationConfig`; chat as Titan's
  documented `User: ... / Bot:` conversation. Titan Embeddings (embeddings): one `inputText` per
  call, so one input per request.
- Meta Llama 3 / 4 (chat, completions): `prompt`, `max_gen_len`, `temperature`, `top_p`; chat
  rendered with the model's chat template (Llama 3's `<|start_header_id|>`, Llama 4's
  `<|header_start|>`). No stop sequences.

All four take `temperature` in 0..1 (the standard scale's half). Usage comes from the body where the
family reports it, else Bedrock's `X-Amzn-Bedrock-Input/Output-Token-Count` headers, else it is
counted with tiktoken and marked estimated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from providers import anthropic, common
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
    InvalidRequest,
    RouteType,
    StdRequest,
    StdResponse,
    UpstreamError,
    Usage,
)
from providers.common import optional_int, optional_str, prompt_as_chat
from providers.streaming import ChoiceDelta, StreamChunk
from providers.tokens import estimate_usage

PROVIDER = "amazon-bedrock"
TEMPERATURE_SCALE = 0.5  # OpenAI's 0..2 → every family's 0..1
ANTHROPIC_VERSION = "bedrock-2023-05-31"
ANTHROPIC_DEFAULT_MAX_TOKENS = anthropic.DEFAULT_MAX_TOKENS
COHERE_EMBED_INPUT_TYPE = "search_document"
COHERE_P_MIN, COHERE_P_MAX = 0.01, 0.99
COHERE_FINISH_REASONS = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "USER_CANCEL": "stop",
    "MAX_TOKENS": "length",
    "ERROR_LIMIT": "length",  # the model's context limit was reached
    "ERROR_TOXIC": "content_filter",
}
TITAN_FINISH_REASONS = {
    "FINISH": "stop",
    "STOP_CRITERIA_MET": "stop",
    "RAG_QUERY_WHEN_RAG_DISABLED": "stop",
    "LENGTH": "length",
    "CONTENT_FILTERED": "content_filter",
}
LLAMA_FINISH_REASONS = {"stop": "stop", "length": "length"}
# Cross-region inference profiles put a geography in front of the family: us.anthropic.claude-...
INFERENCE_PROFILE_PREFIXES = frozenset({"us", "eu", "apac", "global", "us-gov", "jp", "au", "ca", "uk"})
METRICS_KEY = "amazon-bedrock-invocationMetrics"


@dataclass(frozen=True, slots=True)
class AnswerContext:
    """What parsing an answer needs besides its body."""

    model: str
    header_usage: Usage | None = None
    request_id: str | None = None


class FamilyStream:
    """Turns one call's decoded stream events (the JSON inside each `chunk`) into standard chunks."""

    def __init__(self, *, chat: bool) -> None:
        self.chat = chat
        self._role_sent = not chat
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None

    def event_chunk(self, event: Mapping[str, Any]) -> StreamChunk | None:
        raise NotImplementedError

    def usage(self) -> Usage | None:
        """The family's own counts, for a stream that ended without Bedrock's invocation metrics."""
        if self.input_tokens is None:
            return None
        return Usage(input_tokens=self.input_tokens, output_tokens=self.output_tokens or 0)

    def _delta(self, text: str = "", finish_reason: str | None = None) -> ChoiceDelta:
        role = None
        if not self._role_sent:
            role, self._role_sent = "assistant", True
        return ChoiceDelta(index=0, text=text, role=role, finish_reason=finish_reason)


class CountedTextStream(FamilyStream):
    """Stream chunks that each carry a piece of text (`text_key`), the finish reason on the last
    (`reason_key`), and the token counts so far (`input_key`, `output_key`): Titan's and Llama's."""

    text_key: ClassVar[str]
    reason_key: ClassVar[str]
    input_key: ClassVar[str]
    output_key: ClassVar[str]

    def finish_reason(self, reason: Any) -> str | None:
        raise NotImplementedError

    def event_chunk(self, event: Mapping[str, Any]) -> StreamChunk | None:
        if (count := optional_int(event.get(self.input_key))) is not None:
            self.input_tokens = count
        if (count := optional_int(event.get(self.output_key))) is not None:
            self.output_tokens = count
        text = str(event.get(self.text_key) or "")
        reason = self.finish_reason(event.get(self.reason_key))
        if not text and reason is None and self._role_sent:
            return None
        return StreamChunk(deltas=[self._delta(text, reason)])


class Family:
    """One model family's wire format. Subclasses implement the body, the answer and the stream."""

    name: ClassVar[str]
    label: ClassVar[str]
    route_types: ClassVar[frozenset[RouteType]]

    def check_route_type(self, request: StdRequest, model: str) -> None:
        if request.route_type not in self.route_types:
            offered = ", ".join(sorted(self.route_types))
            raise InvalidRequest(
                f"Model '{model}' ({self.label}) is served by Amazon Bedrock for {offered} only, "
                f"not {request.route_type}."
            )

    def request_body(self, request: StdRequest) -> dict[str, Any]:
        raise NotImplementedError

    def parse(self, request: StdRequest, data: Mapping[str, Any], context: AnswerContext) -> StdResponse:
        raise NotImplementedError

    def stream(self, request: StdRequest) -> FamilyStream:
        raise InvalidRequest(f"{self.label} models on Amazon Bedrock do not stream embeddings.")


# ---------------------------------------------------------------- shared helpers


def refuse_candidates(params: CommonParams, label: str) -> None:
    if params.n != 1:
        raise InvalidRequest(
            f"n (candidate_count) must be 1 for {label} models on provider '{PROVIDER}': they answer one "
            f"candidate per call (got {params.n})."
        )


def refuse_penalties(params: CommonParams, label: str) -> None:
    common.refuse_penalties(params, f"{label} models on provider '{PROVIDER}'")


def scaled_temperature(params: CommonParams) -> float | None:
    return None if params.temperature is None else params.temperature * TEMPERATURE_SCALE


def usage_or_fallback(
    usage: Usage, context: AnswerContext, request: StdRequest, outputs: Sequence[str]
) -> Usage:
    """The body's usage when complete, else Bedrock's token-count headers, else a tiktoken estimate."""
    if usage.input_tokens is not None and usage.output_tokens is not None:
        return usage
    if context.header_usage is not None:
        return context.header_usage
    if usage.input_tokens is not None and isinstance(request, EmbeddingsRequest):
        return Usage(input_tokens=usage.input_tokens, output_tokens=0)
    return estimate_usage(request, outputs)


def metrics_usage(event: Mapping[str, Any]) -> Usage | None:
    """Bedrock's `amazon-bedrock-invocationMetrics` (on a stream's last chunk) → Usage."""
    metrics = event.get(METRICS_KEY)
    if not isinstance(metrics, Mapping):
        return None
    input_tokens = optional_int(metrics.get("inputTokenCount"))
    output_tokens = optional_int(metrics.get("outputTokenCount"))
    if input_tokens is None and output_tokens is None:
        return None
    return Usage(input_tokens=input_tokens or 0, output_tokens=output_tokens or 0)


def text_response(
    request: StdRequest,
    *,
    text: str,
    finish_reason: str | None,
    usage: Usage,
    context: AnswerContext,
    response_id: str | None = None,
) -> StdResponse:
    """One candidate as the chat or completions response `request` asks for."""
    usage = usage_or_fallback(usage, context, request, [text])
    ident = response_id or context.request_id
    if isinstance(request, ChatRequest):
        choice = ChatChoice(index=0, message=ChatMessage("assistant", text), finish_reason=finish_reason)
        return ChatResponse(model=context.model, choices=[choice], usage=usage, id=ident)
    completion = CompletionChoice(index=0, text=text, finish_reason=finish_reason)
    return CompletionsResponse(model=context.model, choices=[completion], usage=usage, id=ident)


def required_text(data: Mapping[str, Any], key: str) -> str:
    """`data[key]` when it is a string; KeyError/TypeError (an unreadable answer) otherwise."""
    value = data[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} is not a string")
    return value


# ---------------------------------------------------------------- Anthropic Claude


class AnthropicFamily(Family):
    name = "anthropic"
    label = "Anthropic Claude"
    route_types = frozenset({RouteType.CHAT, RouteType.COMPLETIONS})

    def request_body(self, request: StdRequest) -> dict[str, Any]:
        chat = prompt_as_chat(request) if isinstance(request, CompletionsRequest) else request
        assert isinstance(chat, ChatRequest)
        params = chat.params
        refuse_candidates(params, self.label)
        refuse_penalties(params, self.label)
        system, turns = anthropic.messages_to_vendor(chat.messages)
        body: dict[str, Any] = {
            "anthropic_version": ANTHROPIC_VERSION,
            "max_tokens": params.max_tokens if params.max_tokens is not None else ANTHROPIC_DEFAULT_MAX_TOKENS,
        }
        if system is not None:
            body["system"] = system
        body["messages"] = turns
        if (temperature := scaled_temperature(params)) is not None:
            body["temperature"] = temperature
        if params.top_p is not None:
            body["top_p"] = params.top_p
        if params.stop:
            body["stop_sequences"] = list(params.stop)
        return body

    def parse(self, request: StdRequest, data: Mapping[str, Any], context: AnswerContext) -> StdResponse:
        return text_response(
            request,
            text=anthropic.text_from_vendor(data),
            finish_reason=anthropic.finish_reason_from_vendor(data.get("stop_reason")),
            usage=anthropic.usage_from_vendor(data),
            context=context,
            response_id=optional_str(data.get("id")),
        )

    def stream(self, request: StdRequest) -> FamilyStream:
        return AnthropicStream(chat=isinstance(request, ChatRequest))


class AnthropicStream(FamilyStream):
    """Anthropic's stream events, as Bedrock wraps them: message_start, content_block_delta,
    message_delta (stop reason, output tokens), message_stop; `error` events raise."""

    def event_chunk(self, event: Mapping[str, Any]) -> StreamChunk | None:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") if isinstance(event.get("message"), Mapping) else {}
            assert isinstance(message, Mapping)
            started = anthropic.usage_from_vendor(message)
            self.input_tokens, self.output_tokens = started.input_tokens, started.output_tokens
            if not self.chat:
                return None
            return StreamChunk(deltas=[self._delta()], id=optional_str(message.get("id")))
        if kind == "content_block_delta":
            delta = event.get("delta")
            if isinstance(delta, Mapping) and delta.get("type") == "text_delta":
                return StreamChunk(deltas=[self._delta(str(delta.get("text") or ""))])
            return None
        if kind == "message_delta":
            usage = event.get("usage")
            if isinstance(usage, Mapping) and (out := optional_int(usage.get("output_tokens"))) is not None:
                self.output_tokens = out
            delta = event.get("delta") if isinstance(event.get("delta"), Mapping) else {}
            assert isinstance(delta, Mapping)
            reason = anthropic.finish_reason_from_vendor(delta.get("stop_reason"))
            return StreamChunk(deltas=[self._delta(finish_reason=reason)]) if reason else None
        if kind == "error":
            error = event.get("error") if isinstance(event.get("error"), Mapping) else {}
            assert isinstance(error, Mapping)
            raise UpstreamError(f"The upstream provider failed mid-stream: {error.get('type') or 'error'}.")
        return None  # ping, content_block_start/stop, message_stop


# ---------------------------------------------------------------- Cohere Command R / Embed


class CohereChatFamily(Family):
    name = "cohere"
    label = "Cohere Command R"
    route_types = frozenset({RouteType.CHAT, RouteType.COMPLETIONS})

    def request_body(self, request: StdRequest) -> dict[str, Any]:
        chat = prompt_as_chat(request) if isinstance(request, CompletionsRequest) else request
        assert isinstance(chat, ChatRequest)
        body = self.messages_body(chat.messages)
        body.update(self.params_body(chat.params))
        return body

    def messages_body(self, messages: Sequence[ChatMessage]) -> dict[str, Any]:
        """System messages → `preamble`; the last message (the user's) → `message`; the rest →
        `chat_history` as USER/CHATBOT turns."""
        preamble = [m.content for m in messages if m.role == "system"]
        turns = [m for m in messages if m.role != "system"]
        for message in turns:
            if message.role not in ("user", "assistant"):
                raise InvalidRequest(
                    f"Message role '{message.role}' is not supported by {self.label} models on provider "
                    f"'{PROVIDER}' (use system, user or assistant)."
                )
        if not turns or turns[-1].role != "user":
            raise InvalidRequest(
                f"The last message must have role 'user' for {self.label} models on provider '{PROVIDER}'."
            )
        body: dict[str, Any] = {"message": turns[-1].content}
        if len(turns) > 1:
            body["chat_history"] = [
                {"role": "USER" if m.role == "user" else "CHATBOT", "message": m.content} for m in turns[:-1]
            ]
        if preamble:
            body["preamble"] = "\n".join(preamble)
        return body

    def params_body(self, params: CommonParams) -> dict[str, Any]:
        refuse_candidates(params, self.label)
        body: dict[str, Any] = {}
        if (temperature := scaled_temperature(params)) is not None:
            body["temperature"] = temperature
        if params.top_p is not None:
            if not 0.0 <= params.top_p <= 1.0:
                raise InvalidRequest(f"top_p must be between 0 and 1 (got {params.top_p}).")
            # Cohere's `p` is 0.01..0.99; OpenAI's default top_p=1 ("no cut") is best approximated by 0.99.
            body["p"] = min(max(params.top_p, COHERE_P_MIN), COHERE_P_MAX)
        for name, value in (("presence_penalty", params.presence_penalty),
                            ("frequency_penalty", params.frequency_penalty)):
            if value is None:
                continue
            if not 0.0 <= value <= 1.0:
                raise InvalidRequest(
                    f"{name} must be between 0 and 1 for {self.label} models on provider '{PROVIDER}' "
                    f"(got {value}); Cohere has no negative penalties."
                )
            body[name] = value
        if params.max_tokens is not None:
            body["max_tokens"] = params.max_tokens
        if params.stop:
            body["stop_sequences"] = list(params.stop)
        return body

    def parse(self, request: StdRequest, data: Mapping[str, Any], context: AnswerContext) -> StdResponse:
        meta = data.get("meta") if isinstance(data.get("meta"), Mapping) else {}
        assert isinstance(meta, Mapping)
        billed = meta.get("billed_units") if isinstance(meta.get("billed_units"), Mapping) else {}
        assert isinstance(billed, Mapping)
        usage = Usage(input_tokens=optional_int(billed.get("input_tokens")),
                      output_tokens=optional_int(billed.get("output_tokens")))
        return text_response(
            request,
            text=required_text(data, "text"),
            finish_reason=cohere_finish_reason(data.get("finish_reason")),
            usage=usage,
            context=context,
            response_id=optional_str(data.get("response_id")) or optional_str(data.get("generation_id")),
        )

    def stream(self, request: StdRequest) -> FamilyStream:
        return CohereStream(chat=isinstance(request, ChatRequest))


def cohere_finish_reason(reason: Any) -> str | None:
    """Cohere's finish_reason → OpenAI's; ERROR (the generation failed) raises UpstreamError."""
    if reason is None:
        return None
    reason = str(reason).upper()
    if reason == "ERROR":
        raise UpstreamError("The upstream provider reported an error while generating the answer.")
    return COHERE_FINISH_REASONS.get(reason, reason.lower())


class CohereStream(FamilyStream):
    """Cohere's chat stream events: stream-start, text-generation, stream-end (with finish_reason)."""

    def event_chunk(self, event: Mapping[str, Any]) -> StreamChunk | None:
        kind = event.get("event_type")
        if kind == "stream-start":
            if not self.chat:
                return None
            return StreamChunk(deltas=[self._delta()], id=optional_str(event.get("generation_id")))
        if kind == "text-generation":
            return StreamChunk(deltas=[self._delta(str(event.get("text") or ""))])
        if kind == "stream-end":
            reason = cohere_finish_reason(event.get("finish_reason")) or "stop"
            return StreamChunk(deltas=[self._delta(finish_reason=reason)])
        return None  # citation-generation, search-queries-generation, tool events...


class CohereEmbedFamily(Family):
    name = "cohere-embed"
    label = "Cohere Embed"
    route_types = frozenset({RouteType.EMBEDDINGS})

    def request_body(self, request: StdRequest) -> dict[str, Any]:
        assert isinstance(request, EmbeddingsRequest)
        return {"texts": list(request.inputs), "input_type": COHERE_EMBED_INPUT_TYPE}

    def parse(self, request: StdRequest, data: Mapping[str, Any], context: AnswerContext) -> StdResponse:
        assert isinstance(request, EmbeddingsRequest)
        embeddings = data["embeddings"]
        # `embeddings_floats` answers a bare list; `embeddings_by_type` (embedding_types given) {"float": [...]}.
        vectors = embeddings["float"] if isinstance(embeddings, Mapping) else embeddings
        if not isinstance(vectors, list) or len(vectors) != len(request.inputs):
            raise ValueError(f"expected {len(request.inputs)} embeddings")
        return EmbeddingsResponse(
            model=context.model,
            embeddings=[[float(x) for x in vector] for vector in vectors],
            usage=usage_or_fallback(Usage(), context, request, []),
        )


# ---------------------------------------------------------------- Amazon Titan


class TitanTextFamily(Family):
    name = "titan-text"
    label = "Amazon Titan Text"
    route_types = frozenset({RouteType.CHAT, RouteType.COMPLETIONS})

    def request_body(self, request: StdRequest) -> dict[str, Any]:
        if isinstance(request, ChatRequest):
            text, params = titan_conversation(request.messages), request.params
        else:
            assert isinstance(request, CompletionsRequest)
            text, params = request.prompt, request.params
        refuse_candidates(params, self.label)
        refuse_penalties(params, self.label)
        config: dict[str, Any] = {}
        if (temperature := scaled_temperature(params)) is not None:
            config["temperature"] = temperature
        if params.top_p is not None:
            config["topP"] = params.top_p
        if params.max_tokens is not None:
            config["maxTokenCount"] = params.max_tokens
        if params.stop:
            config["stopSequences"] = list(params.stop)
        body: dict[str, Any] = {"inputText": text}
        if config:
            body["textGenerationConfig"] = config
        return body

    def parse(self, request: StdRequest, data: Mapping[str, Any], context: AnswerContext) -> StdResponse:
        results = data["results"]
        if not isinstance(results, list) or not results or not isinstance(results[0], Mapping):
            raise TypeError("results is not a non-empty list of objects")
        result = results[0]
        usage = Usage(
            input_tokens=optional_int(data.get("inputTextTokenCount")),
            output_tokens=optional_int(result.get("tokenCount")),
        )
        return text_response(
            request,
            text=required_text(result, "outputText"),
            finish_reason=titan_finish_reason(result.get("completionReason")),
            usage=usage,
            context=context,
        )

    def stream(self, request: StdRequest) -> FamilyStream:
        return TitanStream(chat=isinstance(request, ChatRequest))


def titan_conversation(messages: Sequence[ChatMessage]) -> str:
    """Messages as Titan Text's documented conversation: `User: ...` / `Bot: ...` lines ending in
    `Bot:`; system messages lead, as plain lines."""
    lines: list[str] = []
    for message in messages:
        if message.role == "system":
            lines.append(message.content)
        elif message.role == "user":
            lines.append(f"User: {message.content}")
        elif message.role == "assistant":
            lines.append(f"Bot: {message.content}")
        else:
            raise InvalidRequest(
                f"Message role '{message.role}' is not supported by {TitanTextFamily.label} models on provider "
                f"'{PROVIDER}' (use system, user or assistant)."
            )
    if not any(m.role == "user" for m in messages):
        raise InvalidRequest(f"{TitanTextFamily.label} models need at least one user message.")
    lines.append("Bot:")
    return "\n".join(lines)


def titan_finish_reason(reason: Any) -> str | None:
    if reason is None:
        return None
    return TITAN_FINISH_REASONS.get(str(reason).upper(), str(reason).lower())


class TitanStream(CountedTextStream):
    """Titan's stream chunks: `outputText`, `completionReason` on the last, token counts as they go."""

    text_key, reason_key = "outputText", "completionReason"
    input_key, output_key = "inputTextTokenCount", "totalOutputTextTokenCount"

    def finish_reason(self, reason: Any) -> str | None:
        return titan_finish_reason(reason)


class TitanEmbedFamily(Family):
    name = "titan-embed"
    label = "Amazon Titan Embeddings"
    route_types = frozenset({RouteType.EMBEDDINGS})

    def request_body(self, request: StdRequest) -> dict[str, Any]:
        assert isinstance(request, EmbeddingsRequest)
        if len(request.inputs) != 1:
            raise InvalidRequest(
                f"{self.label} models on provider '{PROVIDER}' embed one text per call; send one input "
                f"(got {len(request.inputs)})."
            )
        return {"inputText": request.inputs[0]}

    def parse(self, request: StdRequest, data: Mapping[str, Any], context: AnswerContext) -> StdResponse:
        vector = data["embedding"]
        if not isinstance(vector, list):
            raise TypeError("embedding is not a list")
        usage = Usage(input_tokens=optional_int(data.get("inputTextTokenCount")))
        return EmbeddingsResponse(
            model=context.model,
            embeddings=[[float(x) for x in vector]],
            usage=usage_or_fallback(usage, context, request, []),
        )


# ---------------------------------------------------------------- Meta Llama


class LlamaFamily(Family):
    name = "llama"
    label = "Meta Llama"
    route_types = frozenset({RouteType.CHAT, RouteType.COMPLETIONS})

    def __init__(self, version: int) -> None:
        self.version = version

    def request_body(self, request: StdRequest) -> dict[str, Any]:
        if isinstance(request, ChatRequest):
            prompt, params = self.chat_prompt(request.messages), request.params
        else:
            assert isinstance(request, CompletionsRequest)
            prompt, params = request.prompt, request.params
        refuse_candidates(params, self.label)
        refuse_penalties(params, self.label)
        if params.stop:
            raise InvalidRequest(
                f"stop is not supported by {self.label} models on provider '{PROVIDER}' (Bedrock's Llama API "
                "has no stop sequences); leave it unset."
            )
        body: dict[str, Any] = {"prompt": prompt}
        if params.max_tokens is not None:
            body["max_gen_len"] = params.max_tokens
        if (temperature := scaled_temperature(params)) is not None:
            body["temperature"] = temperature
        if params.top_p is not None:
            body["top_p"] = params.top_p
        return body

    def chat_prompt(self, messages: Sequence[ChatMessage]) -> str:
        """The messages in the model's chat template, ending with the assistant's open header."""
        for message in messages:
            if message.role not in ("system", "user", "assistant"):
                raise InvalidRequest(
                    f"Message role '{message.role}' is not supported by {self.label} models on provider "
                    f"'{PROVIDER}' (use system, user or assistant)."
                )
        if not any(m.role == "user" for m in messages):
            raise InvalidRequest(f"{self.label} models need at least one user message.")
        return llama_prompt(messages, version=self.version)

    def parse(self, request: StdRequest, data: Mapping[str, Any], context: AnswerContext) -> StdResponse:
        usage = Usage(
            input_tokens=optional_int(data.get("prompt_token_count")),
            output_tokens=optional_int(data.get("generation_token_count")),
        )
        return text_response(
            request,
            text=required_text(data, "generation"),
            finish_reason=llama_finish_reason(data.get("stop_reason")),
            usage=usage,
            context=context,
        )

    def stream(self, request: StdRequest) -> FamilyStream:
        return LlamaStream(chat=isinstance(request, ChatRequest))


def llama_prompt(messages: Sequence[ChatMessage], *, version: int) -> str:
    """Meta's chat template: Llama 3.x `<|start_header_id|>role<|end_header_id|>\\n\\ntext<|eot_id|>`,
    Llama 4 `<|header_start|>role<|header_end|>\\n\\ntext<|eot|>`, after `<|begin_of_text|>`."""
    if version >= 4:
        open_header, close_header, end_turn = "<|header_start|>", "<|header_end|>", "<|eot|>"
    else:
        open_header, close_header, end_turn = "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"
    parts = ["<|begin_of_text|>"]
    for message in messages:
        parts.append(f"{open_header}{message.role}{close_header}\n\n{message.content.strip()}{end_turn}")
    parts.append(f"{open_header}assistant{close_header}\n\n")
    return "".join(parts)


def llama_finish_reason(reason: Any) -> str | None:
    if reason is None:
        return None
    return LLAMA_FINISH_REASONS.get(str(reason).lower(), str(reason).lower())


class LlamaStream(CountedTextStream):
    """Llama's stream chunks: `generation`, `stop_reason` on the last; token counts as they go."""

    text_key, reason_key = "generation", "stop_reason"
    input_key, output_key = "prompt_token_count", "generation_token_count"

    def finish_reason(self, reason: Any) -> str | None:
        return llama_finish_reason(reason)


# ---------------------------------------------------------------- choosing the family


def base_model_name(model_id: str) -> str:
    """`provider.model-version` without an ARN's prefix or an inference profile's geography."""
    name = model_id.strip().rsplit("/", 1)[-1]
    head, _, rest = name.partition(".")
    if head.lower() in INFERENCE_PROFILE_PREFIXES and "." in rest:
        return rest
    return name


def family_for(model_id: str) -> Family:
    """The family that serves `model_id`; InvalidRequest (400) for a model this gateway cannot map."""
    name = base_model_name(model_id).lower()
    if name.startswith("anthropic."):
        return AnthropicFamily()
    if name.startswith("cohere.embed"):
        return CohereEmbedFamily()
    if name.startswith("cohere.command-r"):
        return CohereChatFamily()
    if name.startswith("amazon.titan-embed"):
        return TitanEmbedFamily()
    if name.startswith(("amazon.titan-text", "amazon.titan-tg1")):
        return TitanTextFamily()
    if name.startswith("meta.llama"):
        version = name.removeprefix("meta.llama")[:1]
        if version in ("3", "4"):
            return LlamaFamily(int(version))
    raise InvalidRequest(
        f"Model '{model_id}' is not one provider '{PROVIDER}' can call: use an Anthropic (anthropic.*), "
        "Cohere Command R or Embed (cohere.command-r*, cohere.embed-*), Amazon Titan Text or Embeddings "
        "(amazon.titan-text-*, amazon.titan-embed-*) or Meta Llama 3/4 (meta.llama3*, meta.llama4*) model "
        "id, optionally with an inference profile prefix (us., eu., ...)."
    )

"""Cohere's v2 wire format, after Cohere's API reference (`cohere-openapi.yaml`).

`POST /v2/chat` and `POST /v2/embed` with `Authorization: Bearer <key>`. Errors are
`{"id": ..., "message": ...}`: 401 `invalid api token` (a wrong key; Cohere does not echo it) or
`no api key supplied`; 400 for invalid values; 422 for fields the API does not know (Cohere's
`unknown field: parameter 'x' is not a valid field`), which catches OpenAI names (`n`, `stop`,
`top_p`) leaking through an adapter.

Answers are deterministic. Chat answers `Fake Cohere answer to: <last user message>`, cut at the
first `stop_sequences` match (finish_reason STOP_SEQUENCE), then at `max_tokens` tokens
(MAX_TOKENS), else COMPLETE. Tokens are counted with `count_tokens` (the OpenAI fake's regex):
`usage.billed_units.input_tokens` is the tokens of all message contents, and `usage.tokens.input_tokens`
adds `TEMPLATE_TOKENS` for the prompt template, as Cohere's `tokens` (what the model read) exceed
its `billed_units`. Embed answers `embeddings.float` in input order with `meta.billed_units`.
Validation follows the reference's ranges: temperature 0..1, p 0.01..0.99, k 0..500, penalties
0..1, at most 5 stop sequences, 1..96 texts; embed needs `input_type` and `embedding_types`.

Chat streams (`stream: true`) as v2 does: SSE events `message-start`, `content-start`, one
`content-delta` per word, `content-end`, `message-end` (`finish_reason` and `usage`), each with its
`type` in the data too. The `stream-error` fault ends the stream after the first delta with a
`message-end` whose finish reason is ERROR, Cohere's way of saying the generation failed.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tests.fake_upstream.faults import choose_fault, play
from tests.fake_upstream.openai import TOKEN_PATTERN, count_tokens, fake_embedding
from tests.fake_upstream.sse import sse_frame, words, write_stream
from tests.fake_upstream.state import FakeState

TEMPLATE_TOKENS = 7
CHAT_FIELDS = frozenset(
    {
        "model", "messages", "stream", "tools", "documents", "citation_options", "response_format",
        "safety_mode", "max_tokens", "stop_sequences", "temperature", "seed", "frequency_penalty",
        "presence_penalty", "k", "p", "logprobs", "tool_choice", "strict_tools", "thinking", "priority",
    }
)
EMBED_FIELDS = frozenset(
    {"model", "texts", "images", "inputs", "input_type", "embedding_types", "truncate", "max_tokens",
     "output_dimension", "priority"}
)
ROLES = frozenset({"system", "user", "assistant", "tool"})
INPUT_TYPES = frozenset({"search_document", "search_query", "classification", "clustering", "image"})
_ids = itertools.count(1)

Handler = Callable[[web.Request, dict[str, Any]], Awaitable[web.StreamResponse]]


class CohereError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _id() -> str:
    return f"00000000-0000-4000-8000-{next(_ids):012d}"


def cohere_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """Cohere's error body: `{"id", "message"}`."""
    return web.json_response({"id": _id(), "message": message}, status=status, headers=headers)


def _auth(request: web.Request, state: FakeState) -> web.Response | None:
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer ") or not auth[7:].strip():
        return cohere_error(401, "no api key supplied")
    if auth[7:].strip() not in state.credentials.cohere_keys:
        return cohere_error(401, "invalid api token")
    return None


# ---------------------------------------------------------------- validation


def _check_fields(body: dict[str, Any], known: frozenset[str], endpoint: str) -> None:
    for name in body:
        if name not in known:
            raise CohereError(
                422,
                f"unknown field: parameter '{name}' is not a valid field. For proper usage, please "
                f"refer to https://docs.cohere.com/reference/{endpoint}",
            )


def _check_number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
        raise CohereError(400, f"invalid request: {name} must be between {low:g} and {high:g}, got {value}.")


def _check_chat(body: dict[str, Any]) -> list[dict[str, Any]]:
    _check_fields(body, CHAT_FIELDS, "chat")
    if body.get("stream") not in (None, True, False):
        raise CohereError(400, "invalid request: stream must be a boolean.")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise CohereError(400, "invalid request: messages must contain at least one message.")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise CohereError(400, f"invalid request: messages[{i}].role must be one of {sorted(ROLES)}.")
        if not isinstance(message.get("content"), str | list):
            raise CohereError(400, f"invalid request: messages[{i}].content is required.")
    _check_number(body, "temperature", 0, 1)
    _check_number(body, "p", 0.01, 0.99)
    _check_number(body, "k", 0, 500)
    _check_number(body, "frequency_penalty", 0, 1)
    _check_number(body, "presence_penalty", 0, 1)
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise CohereError(400, f"invalid request: max_tokens must be a positive integer, got {max_tokens}.")
    stops = body.get("stop_sequences")
    if stops is not None and (
        not isinstance(stops, list) or len(stops) > 5 or not all(isinstance(s, str) for s in stops)
    ):
        raise CohereError(400, "invalid request: stop_sequences must be a list of at most 5 strings.")
    return messages


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))


# ---------------------------------------------------------------- answers


def shape_answer(text: str, body: dict[str, Any]) -> tuple[str, str]:
    """Cut `text` as `stop_sequences` and `max_tokens` ask: (text, Cohere finish_reason)."""
    for stop in body.get("stop_sequences") or []:
        if stop and stop in text:
            return text[: text.index(stop)], "STOP_SEQUENCE"
    max_tokens = body.get("max_tokens")
    tokens = list(TOKEN_PATTERN.finditer(text))
    if isinstance(max_tokens, int) and len(tokens) > max_tokens:
        return text[: tokens[max_tokens - 1].end()], "MAX_TOKENS"
    return text, "COMPLETE"


async def stream_chat(request: web.Request, text: str, finish: str, usage: dict[str, Any]) -> web.StreamResponse:
    """The answer as v2 chat's event stream (stream faults played after the first content delta)."""

    def event(data: dict[str, Any]) -> bytes:
        return sse_frame(data, data["type"])

    frames = [
        event({"id": _id(), "type": "message-start", "delta": {"message": {
            "role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}}}),
        event({"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "text", "text": ""}}}}),
    ]
    first_text = len(frames)
    for piece in words(text):
        frames.append(event({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": piece}}}}))
    frames += [
        event({"type": "content-end", "index": 0}),
        event({"type": "message-end", "delta": {"finish_reason": finish, "usage": usage}}),
    ]
    error = event({"type": "message-end", "delta": {"finish_reason": "ERROR", "error": "internal generation error"}})
    return await write_stream(request, frames, first_text=first_text, error_frame=error)


async def chat_answer(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    messages = _check_chat(body)
    last_user = next((_text(m["content"]) for m in reversed(messages) if m["role"] == "user"), "")
    text, finish = shape_answer(f"Fake Cohere answer to: {last_user}", body)
    prompt = sum(count_tokens(_text(m["content"])) for m in messages)
    output = count_tokens(text)
    usage = {
        "billed_units": {"input_tokens": prompt, "output_tokens": output},
        "tokens": {"input_tokens": prompt + TEMPLATE_TOKENS, "output_tokens": output},
    }
    if body.get("stream"):
        return await stream_chat(request, text, finish, usage)
    return web.json_response(
        {
            "id": _id(),
            "message": {"role": "assistant", "content": [{"type": "text", "text": text}]},
            "finish_reason": finish,
            "usage": usage,
        }
    )


async def embed_answer(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    _check_fields(body, EMBED_FIELDS, "embed")
    texts = body.get("texts")
    if not isinstance(texts, list) or not 1 <= len(texts) <= 96 or not all(isinstance(t, str) for t in texts):
        raise CohereError(400, "invalid request: texts must be a list of 1 to 96 strings.")
    if body.get("input_type") not in INPUT_TYPES:
        raise CohereError(400, f"invalid request: input_type must be one of {sorted(INPUT_TYPES)}.")
    types = body.get("embedding_types")
    if not isinstance(types, list) or not types:
        raise CohereError(400, "invalid request: embedding_types is required.")
    if types != ["float"]:
        raise CohereError(400, "invalid request: the fake Cohere only returns float embeddings.")
    return web.json_response(
        {
            "id": _id(),
            "embeddings": {"float": [fake_embedding(t) for t in texts]},
            "texts": texts,
            "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": sum(map(count_tokens, texts))}},
            "response_type": "embeddings_by_type",
        }
    )


def cohere_endpoint(state: FakeState, answer: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        try:
            try:
                body = await request.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise CohereError(400, "invalid request: could not parse the JSON body.")
            model = body.get("model")
            if fault := choose_fault(state.take_fault(), model):
                played = await play(fault, request, cohere_error)
                if played is not None:
                    return played
            if (denied := _auth(request, state)) is not None:
                return denied
            if not isinstance(model, str) or not model:
                raise CohereError(400, "invalid request: model is required.")
            return await answer(request, body)
        except CohereError as exc:
            return cohere_error(exc.status, exc.message)

    return endpoint


def routes(state: FakeState) -> list[web.RouteDef]:
    """This vendor's routes; the server adds them to its app."""
    return [
        web.post("/v2/chat", cohere_endpoint(state, chat_answer)),
        web.post("/v2/embed", cohere_endpoint(state, embed_answer)),
    ]


__all__ = ["TEMPLATE_TOKENS", "cohere_error", "routes", "shape_answer"]

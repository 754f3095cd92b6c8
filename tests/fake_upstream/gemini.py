"""Google's Gemini API (generativelanguage v1beta) wire format, after Google's published API reference.

`POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent` (`?alt=sse` for Server-Sent
Events framed `data: {json}\\r\\n\\r\\n`, as Google frames them; without it one JSON array),
`:batchEmbedContents` and `:embedContent`. The key is taken from the `x-goog-api-key` header or a
`?key=` query, as Google takes it. Errors are `{"error": {"code", "message", "status", "details"}}`:
no key → 403 PERMISSION_DENIED; a wrong key → 400 INVALID_ARGUMENT with an ErrorInfo detail reason
API_KEY_INVALID and a DebugInfo detail that echoes the key (as Google's does); unknown JSON fields →
400 `Invalid JSON payload received. Unknown name "..."` (which catches OpenAI names such as
`messages` or `max_tokens` leaking through an adapter); roles other than `user`/`model`, and two
turns in a row with the same role, → 400; a chat model asked to embed (or an `embedding` model to
generate) → 404 NOT_FOUND. 429 carries a RetryInfo detail (`retryDelay`) instead of a Retry-After
header, as Google's does.

Answers are deterministic: `Fake Gemini answer to: <last user part>`, cut at the first
`stopSequences` match (finishReason STOP), then at `maxOutputTokens` tokens (MAX_TOKENS), once per
`candidateCount`; candidate 0 has no `index` (proto3 JSON leaves zeros out). Tokens are counted with
the OpenAI fake's `count_tokens`: `promptTokenCount` is the tokens of the system instruction and
every part; a model with `2.5` in its name adds `THOUGHT_TOKENS` as `thoughtsTokenCount`.
Safety: a last user part containing `BLOCK_PROMPT` is answered with `promptFeedback.blockReason`
SAFETY and no candidates; one containing `BLOCK_ANSWER` with a candidate whose finishReason is
SAFETY and which has no content (streamed: two pieces of text first, then the SAFETY event).
Streams send one event per word, usage (prompt only) on every event and the full usage with the
finish reason on the last; the shared stream faults play after the first event (`stream-error`
sends Google's error object as an event).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tests.fake_upstream.faults import STREAM_FAULT, choose_fault, play
from tests.fake_upstream.openai import TOKEN_PATTERN, count_tokens, fake_embedding
from tests.fake_upstream.state import FakeState

API_VERSION = "v1beta"
THOUGHT_TOKENS = 5
MAX_CANDIDATES = 8
MAX_BATCH = 100
BLOCK_PROMPT = "BLOCK_PROMPT"
BLOCK_ANSWER = "BLOCK_ANSWER"
GENERATE_FIELDS = frozenset(
    {"contents", "systemInstruction", "system_instruction", "generationConfig", "generation_config",
     "safetySettings", "safety_settings", "tools", "toolConfig", "tool_config", "cachedContent",
     "cached_content"}
)
GENERATION_CONFIG_FIELDS = frozenset(
    {"stopSequences", "candidateCount", "maxOutputTokens", "temperature", "topP", "topK", "seed",
     "presencePenalty", "frequencyPenalty", "responseMimeType", "responseSchema", "responseLogprobs",
     "logprobs", "thinkingConfig"}
)
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
SAFETY_RATINGS = [
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
]
_ids = itertools.count(1)

Answer = Callable[[web.Request, dict[str, Any], str], Awaitable[web.StreamResponse]]


class GoogleError(Exception):
    def __init__(self, status: int, message: str, *, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.details = status, message, details


def google_error(
    status: int, message: str, headers: dict[str, str] | None = None, *, details: list[dict[str, Any]] | None = None
) -> web.Response:
    """Google's error body. A 429's `Retry-After` (from the shared faults) becomes a RetryInfo detail:
    Google sends no such header."""
    headers = dict(headers or {})
    retry_after = headers.pop("Retry-After", None)
    error: dict[str, Any] = {"code": status, "message": message, "status": STATUS_NAMES.get(status, "UNKNOWN")}
    if status == 429:
        details = [*(details or []), {"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                      "retryDelay": f"{float(retry_after or 1):g}s"}]
    if details:
        error["details"] = details
    return web.json_response({"error": error}, status=status, headers=headers)


def _response_id() -> str:
    return f"fakeGeminiResp{next(_ids)}"


def _auth(request: web.Request, state: FakeState) -> web.Response | None:
    key = request.headers.get("x-goog-api-key") or request.query.get("key")
    if not key:
        return google_error(
            403,
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API.",
        )
    if key not in state.credentials.gemini_keys:
        message = "API key not valid. Please pass a valid API key."
        return google_error(400, message, details=[
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
             "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}},
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US", "message": message},
            {"@type": "type.googleapis.com/google.rpc.DebugInfo", "detail": f"Invalid API key: {key}"},
        ])
    return None


# ---------------------------------------------------------------- validation


def _check_fields(body: dict[str, Any], known: frozenset[str], where: str | None = None) -> None:
    for name in body:
        if name not in known:
            at = f" at '{where}'" if where else ""
            raise GoogleError(400, f'Invalid JSON payload received. Unknown name "{name}"{at}: Cannot find field.')


def _texts(content: Any, where: str) -> list[str]:
    if not isinstance(content, dict):
        raise GoogleError(400, f"* {where}: must be an object")
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        raise GoogleError(400, f"* {where}.parts: contents.parts must not be empty.")
    texts = []
    for j, part in enumerate(parts):
        if not isinstance(part, dict) or not isinstance(part.get("text"), str) or not part["text"]:
            raise GoogleError(
                400, f"* {where}.parts[{j}].data: required oneof field 'data' must have one initialized field"
            )
        texts.append(part["text"])
    return texts


def _check_number(config: dict[str, Any], name: str, low: float, high: float) -> None:
    value = config.get(name)
    if value is None:
        return
    if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
        raise GoogleError(400, f"* GenerateContentRequest.generation_config.{name}: must be in [{low:g}, {high:g}]")


def _check_generate(body: dict[str, Any]) -> tuple[list[str], list[tuple[str, list[str]]], dict[str, Any]]:
    """(system texts, [(role, texts)], generationConfig) of a valid request; GoogleError otherwise."""
    _check_fields(body, GENERATE_FIELDS)
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise GoogleError(400, "* GenerateContentRequest.contents: contents is not specified")
    turns: list[tuple[str, list[str]]] = []
    for i, content in enumerate(contents):
        role = content.get("role", "user") if isinstance(content, dict) else None
        if role not in ("user", "model"):
            raise GoogleError(400, "Please use a valid role: user, model.")
        if turns and turns[-1][0] == role:
            raise GoogleError(400, "Please ensure that multiturn requests alternate between user and model.")
        turns.append((role, _texts(content, f"GenerateContentRequest.contents[{i}]")))
    instruction = body.get("systemInstruction", body.get("system_instruction"))
    system = _texts(instruction, "GenerateContentRequest.system_instruction") if instruction is not None else []
    config = body.get("generationConfig", body.get("generation_config")) or {}
    if not isinstance(config, dict):
        raise GoogleError(400, "Invalid JSON payload received. 'generation_config' must be an object.")
    _check_fields(config, GENERATION_CONFIG_FIELDS, "generation_config")
    _check_number(config, "temperature", 0, 2)
    _check_number(config, "topP", 0, 1)
    _check_number(config, "presencePenalty", -2, 2)
    _check_number(config, "frequencyPenalty", -2, 2)
    _check_number(config, "candidateCount", 1, MAX_CANDIDATES)
    max_tokens = config.get("maxOutputTokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise GoogleError(400, "* GenerateContentRequest.generation_config.max_output_tokens: must be positive")
    stops = config.get("stopSequences")
    if stops is not None and (
        not isinstance(stops, list) or len(stops) > 5 or not all(isinstance(s, str) for s in stops)
    ):
        raise GoogleError(400, "* GenerateContentRequest.generation_config.stop_sequences: at most 5 strings")
    return system, turns, config


# ---------------------------------------------------------------- answers


def shape_answer(text: str, config: dict[str, Any]) -> tuple[str, str]:
    """Cut `text` as `stopSequences` and `maxOutputTokens` ask: (text, Gemini finishReason)."""
    for stop in config.get("stopSequences") or []:
        if stop and stop in text:
            text = text[: text.index(stop)]
    max_tokens = config.get("maxOutputTokens")
    tokens = list(TOKEN_PATTERN.finditer(text))
    if isinstance(max_tokens, int) and len(tokens) > max_tokens:
        return text[: tokens[max_tokens - 1].end()], "MAX_TOKENS"
    return text, "STOP"


def _candidate(index: int, text: str | None, finish: str | None) -> dict[str, Any]:
    candidate: dict[str, Any] = {}
    if text is not None:
        candidate["content"] = {"parts": [{"text": text}], "role": "model"}
    if finish is not None:
        candidate["finishReason"] = finish
        candidate["safetyRatings"] = SAFETY_RATINGS if finish == "SAFETY" else []
    if index:  # proto3 JSON leaves out zero values
        candidate["index"] = index
    return candidate


def _usage(prompt: int, candidates: int | None, thoughts: int) -> dict[str, int]:
    usage = {"promptTokenCount": prompt}
    if candidates is not None:
        usage["candidatesTokenCount"] = candidates
        if thoughts:
            usage["thoughtsTokenCount"] = thoughts
    usage["totalTokenCount"] = prompt + (candidates or 0) + (thoughts if candidates is not None else 0)
    return usage


async def generate_answer(request: web.Request, body: dict[str, Any], model: str) -> web.StreamResponse:
    system, turns, config = _check_generate(body)
    stream = request.match_info["method"] == "streamGenerateContent"
    last_user = next((texts[-1] for role, texts in reversed(turns) if role == "user"), "")
    prompt = sum(count_tokens(t) for t in system) + sum(count_tokens(t) for _, texts in turns for t in texts)
    n = int(config.get("candidateCount") or 1)
    thoughts = THOUGHT_TOKENS if "2.5" in model else 0
    common = {"modelVersion": model, "responseId": _response_id()}

    if BLOCK_PROMPT in last_user:
        blocked = {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": SAFETY_RATINGS},
                   "usageMetadata": _usage(prompt, None, 0), **common}
        return await _send(request, [blocked], stream)
    text, finish = shape_answer(f"Fake Gemini answer to: {last_user}", config)
    if BLOCK_ANSWER in last_user:
        if not stream:
            final = {"candidates": [_candidate(i, None, "SAFETY") for i in range(n)],
                     "usageMetadata": _usage(prompt, 0, 0), **common}
            return await _send(request, [final], stream)
        words = re.findall(r"\s*\S+\s*", text)[:2]
        frames = [{"candidates": [_candidate(i, w, None) for i in range(n)],
                   "usageMetadata": _usage(prompt, None, 0), **common} for w in words]
        frames.append({"candidates": [_candidate(i, None, "SAFETY") for i in range(n)],
                       "usageMetadata": _usage(prompt, n * count_tokens("".join(words)), 0), **common})
        return await _send(request, frames, stream)
    usage = _usage(prompt, n * count_tokens(text), thoughts)
    if not stream:
        answer = {"candidates": [_candidate(i, text, finish) for i in range(n)], "usageMetadata": usage, **common}
        return await _send(request, [answer], stream)
    words = re.findall(r"\s*\S+\s*", text) or [""]
    frames = []
    for step, word in enumerate(words):
        last = step == len(words) - 1
        frames.append({
            "candidates": [_candidate(i, word, finish if last else None) for i in range(n)],
            "usageMetadata": usage if last else _usage(prompt, None, 0),
            **common,
        })
    return await _send(request, frames, stream)


async def _send(request: web.Request, frames: list[dict[str, Any]], stream: bool) -> web.StreamResponse:
    """A plain answer, a JSON array stream (no `alt=sse`), or SSE events with the stream faults."""
    if not stream:
        return web.json_response(frames[0])
    if request.query.get("alt") != "sse":
        return web.json_response(frames)
    fault = request.get(STREAM_FAULT)
    delay = fault.seconds if fault is not None and fault.kind == "stream-slow" else 0.0
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    for index, frame in enumerate(frames):
        if delay:
            await asyncio.sleep(delay)
        await response.write(b"data: " + json.dumps(frame).encode() + b"\r\n\r\n")
        if index == 0 and fault is not None and fault.kind == "stream-error":
            error = {"error": {"code": 500, "status": "INTERNAL", "message": "An internal error has occurred. "
                               "Please retry or report in https://developers.generativeai.google/guide/troubleshooting"}}
            await response.write(b"data: " + json.dumps(error).encode() + b"\r\n\r\n")
            await response.write_eof()
            return response
        if index == 0 and fault is not None and fault.kind == "stream-cut":
            assert request.transport is not None
            request.transport.close()
            return response
    await response.write_eof()
    return response


def _embed_texts(requests: Any, model: str) -> list[str]:
    if not isinstance(requests, list) or not requests:
        raise GoogleError(400, "* BatchEmbedContentsRequest.requests: requests is not specified")
    if len(requests) > MAX_BATCH:
        raise GoogleError(
            400, f"* BatchEmbedContentsRequest.requests: at most {MAX_BATCH} requests can be in one batch"
        )
    texts = []
    for i, item in enumerate(requests):
        where = f"BatchEmbedContentsRequest.requests[{i}]"
        if not isinstance(item, dict):
            raise GoogleError(400, f"* {where}: must be an object")
        _check_fields(item, frozenset({"model", "content", "taskType", "title", "outputDimensionality"}), where)
        if item.get("model") != f"models/{model}":
            raise GoogleError(400, f"* {where}.model: the model must match the one in the URL (models/{model}).")
        texts.append(" ".join(_texts(item.get("content"), f"{where}.content")))
    return texts


async def batch_embed_answer(request: web.Request, body: dict[str, Any], model: str) -> web.StreamResponse:
    _check_fields(body, frozenset({"requests"}))
    texts = _embed_texts(body.get("requests"), model)
    return web.json_response({"embeddings": [{"values": fake_embedding(t)} for t in texts]})


async def embed_answer(request: web.Request, body: dict[str, Any], model: str) -> web.StreamResponse:
    _check_fields(body, frozenset({"model", "content", "taskType", "title", "outputDimensionality"}))
    text = " ".join(_texts(body.get("content"), "EmbedContentRequest.content"))
    return web.json_response({"embedding": {"values": fake_embedding(text)}})


ANSWERS: dict[str, Answer] = {
    "generateContent": generate_answer,
    "streamGenerateContent": generate_answer,
    "batchEmbedContents": batch_embed_answer,
    "embedContent": embed_answer,
}


def routes(state: FakeState) -> list[web.RouteDef]:
    """This vendor's routes; the server adds them to its app."""

    async def endpoint(request: web.Request) -> web.StreamResponse:
        model, method = request.match_info["model"], request.match_info["method"]
        try:
            if fault := choose_fault(state.take_fault(), model):
                played = await play(fault, request, google_error)
                if played is not None:
                    return played
            if (denied := _auth(request, state)) is not None:
                return denied
            answer = ANSWERS.get(method)
            if answer is None:
                raise GoogleError(404, f"Method not found: {method}.")
            if ("embed" in method.lower()) != ("embedding" in model):
                raise GoogleError(
                    404,
                    f"models/{model} is not found for API version {API_VERSION}, or is not supported for "
                    f"{method}. Call ListModels to see the list of available models and their supported methods.",
                )
            try:
                body = await request.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise GoogleError(400, "Invalid JSON payload received. Expected an object.")
            return await answer(request, body, model)
        except GoogleError as exc:
            return google_error(exc.status, exc.message, details=exc.details)

    return [web.post(f"/{API_VERSION}/models/{{model:[^/:]+}}:{{method:[A-Za-z]+}}", endpoint)]


__all__ = ["BLOCK_ANSWER", "BLOCK_PROMPT", "THOUGHT_TOKENS", "google_error", "routes", "shape_answer"]

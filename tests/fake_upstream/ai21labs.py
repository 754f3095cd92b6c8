"""AI21 Labs' wire format: Jamba chat (`POST /studio/v1/chat/completions`) and the legacy Jurassic-2
`complete` API (`POST /studio/v1/{model}/complete`), after AI21's API reference and SDK.

Both want `Authorization: Bearer <key>`; a missing or wrong key is 401
`{"detail": "Forbidden: Bad or missing API token."}`. Validation errors are FastAPI's 422
`{"detail": [{"type", "loc", "msg", "input"}]}`. Stricter than AI21 in one way, on purpose: unknown
body fields are a 422 too, so OpenAI names leaking through an adapter (`presence_penalty`, or
`max_tokens` on J2) fail the tests.

Jamba: `model` and `messages` required; `temperature` 0..2, `top_p` 0..1, `max_tokens` 1..4096,
`n` 1..16, `stop` a string or strings. Answers `Fake Jamba answer to: <last user message>` (`n`
times), cut before the first stop sequence (`stop`) or at `max_tokens` tokens (`length`);
`usage.prompt_tokens` is the tokens of every message plus `TEMPLATE_TOKENS` per message (the chat
template). Streams (`stream: true`): a role chunk, one chunk per word, a finish chunk with `usage`
(null on every other chunk), `data: [DONE]`; stream faults after the first word.

J2: the model must start with `j2-` (else 404). Fields `prompt` (required), `numResults` 1..16,
`maxTokens` (default 16), `minTokens`, `temperature` 0..5, `topP` 0..1, `topKReturn`, `stopSequences`,
and the penalty objects. Answers `Fake J2 completion of: <prompt>` with `prompt.tokens` and
`completions[].data.tokens` lists (one item per token) and `finishReason` `endoftext`, `stop` (with
`sequence`) or `length` (with `length`). J2 does not stream.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tests.fake_upstream.faults import choose_fault, play
from tests.fake_upstream.openai import TOKEN_PATTERN, count_tokens
from tests.fake_upstream.sse import words, write_stream
from tests.fake_upstream.state import FakeState

TEMPLATE_TOKENS = 2
J2_DEFAULT_MAX_TOKENS = 16
CHAT_FIELDS = frozenset(
    {"model", "messages", "max_tokens", "temperature", "top_p", "stop", "n", "stream", "tools",
     "response_format", "documents", "tool_choice"}
)
J2_FIELDS = frozenset(
    {"prompt", "numResults", "maxTokens", "minTokens", "temperature", "topP", "topKReturn", "stopSequences",
     "frequencyPenalty", "presencePenalty", "countPenalty", "epoch", "logitBias"}
)
ROLES = frozenset({"system", "user", "assistant", "tool"})
_ids = itertools.count(1)

Answer = Callable[[web.Request, dict[str, Any], str], Awaitable[web.StreamResponse]]
Endpoint = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AI21Error(Exception):
    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(str(detail))
        self.status, self.detail = status, detail


def ai21_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """AI21's error body, FastAPI's `{"detail": ...}` (also the fault player's responder)."""
    return web.json_response({"detail": message}, status=status, headers=headers)


def _field_error(field: str, msg: str, value: Any, kind: str = "value_error") -> AI21Error:
    return AI21Error(422, [{"type": kind, "loc": ["body", field], "msg": msg, "input": value}])


def _check_fields(body: dict[str, Any], known: frozenset[str]) -> None:
    for name in body:
        if name not in known:
            raise _field_error(name, "Extra inputs are not permitted", body[name], "extra_forbidden")


def _check_range(body: dict[str, Any], name: str, low: float, high: float, *, integer: bool = False) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int if integer else int | float):
        raise _field_error(name, f"Input should be a valid {'integer' if integer else 'number'}", value)
    if value < low:
        raise _field_error(name, f"Input should be greater than or equal to {low:g}", value, "greater_than_equal")
    if value > high:
        raise _field_error(name, f"Input should be less than or equal to {high:g}", value, "less_than_equal")


def _auth(request: web.Request, state: FakeState) -> web.Response | None:
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer ") or auth[7:].strip() not in state.credentials.ai21labs_keys:
        return ai21_error(401, "Forbidden: Bad or missing API token.")
    return None


def cut(text: str, stops: list[str], max_tokens: int | None) -> tuple[str, str, str | None]:
    """(text, reason, matched stop): cut before the first stop sequence, then at `max_tokens` tokens."""
    hits = [(text.index(s), s) for s in stops if s and s in text]
    stop = min(hits) if hits else None
    if stop is not None:
        text = text[: stop[0]]
    tokens = list(TOKEN_PATTERN.finditer(text))
    if max_tokens is not None and len(tokens) > max_tokens:
        return (text[: tokens[max_tokens - 1].end()] if max_tokens else ""), "length", None
    return text, ("stop" if stop else "end"), (stop[1] if stop else None)


# ---------------------------------------------------------------- Jamba chat


def _check_chat(body: dict[str, Any]) -> list[dict[str, Any]]:
    _check_fields(body, CHAT_FIELDS)
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _field_error("model", "Field required", None, "missing")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _field_error("messages", "List should have at least 1 item after validation", messages, "too_short")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise AI21Error(422, [{"type": "union_tag_invalid", "loc": ["body", "messages", i],
                                   "msg": f"Input tag '{message.get('role') if isinstance(message, dict) else None}' "
                                          "does not match any of the expected tags: 'user', 'assistant', 'tool', "
                                          "'system'", "input": message}])
        if not isinstance(message.get("content"), str):
            raise _field_error(f"messages.{i}.content", "Input should be a valid string", message.get("content"))
    _check_range(body, "temperature", 0, 2)
    _check_range(body, "top_p", 0, 1)
    _check_range(body, "max_tokens", 1, 4096, integer=True)
    _check_range(body, "n", 1, 16, integer=True)
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str) and (
        not isinstance(stop, list) or not all(isinstance(s, str) for s in stop)
    ):
        raise _field_error("stop", "Input should be a valid list", stop)
    return messages


async def chat(request: web.Request, body: dict[str, Any], model: str) -> web.StreamResponse:
    messages = _check_chat(body)
    last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    stops = body.get("stop") or []
    text, reason, _ = cut(f"Fake Jamba answer to: {last_user}", [stops] if isinstance(stops, str) else stops,
                          body.get("max_tokens"))
    finish = "length" if reason == "length" else "stop"
    n = body.get("n") or 1
    prompt = sum(count_tokens(m["content"]) + TEMPLATE_TOKENS for m in messages)
    usage = {"prompt_tokens": prompt, "completion_tokens": n * count_tokens(text),
             "total_tokens": prompt + n * count_tokens(text)}
    ident = f"chat-{uuid.UUID(int=next(_ids))}"
    if not body.get("stream"):
        return web.json_response({
            "id": ident,
            "choices": [{"index": i, "message": {"role": "assistant", "content": text, "tool_calls": None},
                         "logprobs": None, "finish_reason": finish} for i in range(n)],
            "usage": usage,
            "meta": {"requestDurationMillis": 12},
            "model": model,
        })

    def chunk(choices: list[dict[str, Any]], with_usage: bool = False) -> bytes:
        data = {"id": ident, "choices": choices, "usage": usage if with_usage else None, "created": int(time.time())}
        return b"data: " + json.dumps(data).encode() + b"\n\n"

    pieces = words(text)
    frames = [chunk([{"index": i, "delta": {"role": "assistant"}, "logprobs": None, "finish_reason": None}
                     for i in range(n)])]
    for piece in pieces:
        frames.append(chunk([{"index": i, "delta": {"content": piece}, "logprobs": None, "finish_reason": None}
                             for i in range(n)]))
    frames.append(chunk([{"index": i, "delta": {"content": ""}, "logprobs": None, "finish_reason": finish}
                         for i in range(n)], with_usage=True))
    frames.append(b"data: [DONE]\n\n")
    error = b"data: " + json.dumps({"detail": "The model failed while generating the answer."}).encode() + b"\n\n"
    return await write_stream(request, frames, first_text=1, error_frame=error)


# ---------------------------------------------------------------- J2 complete


def _tokens(text: str) -> list[dict[str, Any]]:
    out, start = [], 0
    for match in TOKEN_PATTERN.finditer(text):
        out.append({"generatedToken": {"token": "▁" + match.group(), "logprob": -1.0, "raw_logprob": -1.0},
                    "topTokens": None, "textRange": {"start": start, "end": match.end()}})
        start = match.end()
    return out


async def complete(request: web.Request, body: dict[str, Any], model: str) -> web.StreamResponse:
    if not model.startswith("j2-"):
        raise AI21Error(404, "Not Found")
    _check_fields(body, J2_FIELDS)
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        raise _field_error("prompt", "Field required", None, "missing")
    _check_range(body, "numResults", 1, 16, integer=True)
    _check_range(body, "maxTokens", 0, 8191, integer=True)
    _check_range(body, "temperature", 0, 5)
    _check_range(body, "topP", 0, 1)
    stops = body.get("stopSequences") or []
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise _field_error("stopSequences", "Input should be a valid list", stops)
    max_tokens = body.get("maxTokens", J2_DEFAULT_MAX_TOKENS)
    text, reason, sequence = cut(f"Fake J2 completion of: {prompt}", stops, max_tokens)
    if reason == "length":
        finish: dict[str, Any] = {"reason": "length", "length": max_tokens}
    elif reason == "stop":
        finish = {"reason": "stop", "sequence": sequence}
    else:
        finish = {"reason": "endoftext"}
    completions = [{"data": {"text": text, "tokens": _tokens(text)}, "finishReason": finish}
                   for _ in range(body.get("numResults") or 1)]
    return web.json_response({
        "id": str(uuid.UUID(int=next(_ids))),
        "prompt": {"text": prompt, "tokens": _tokens(prompt)},
        "completions": completions,
    })


# ---------------------------------------------------------------- routes


def ai21_endpoint(state: FakeState, answer: Answer) -> Endpoint:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        try:
            try:
                body = await request.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise AI21Error(422, [{"type": "json_invalid", "loc": ["body"], "msg": "JSON decode error",
                                       "input": {}}])
            model = request.match_info.get("model") or body.get("model")
            if fault := choose_fault(state.take_fault(), model):
                played = await play(fault, request, ai21_error)
                if played is not None:
                    return played
            if (denied := _auth(request, state)) is not None:
                return denied
            return await answer(request, body, str(model or ""))
        except AI21Error as exc:
            return web.json_response({"detail": exc.detail}, status=exc.status)

    return endpoint


def routes(state: FakeState) -> list[web.RouteDef]:
    """This vendor's routes; the server adds them to its app."""
    return [
        web.post("/studio/v1/chat/completions", ai21_endpoint(state, chat)),
        web.post("/studio/v1/{model}/complete", ai21_endpoint(state, complete)),
    ]


__all__ = ["TEMPLATE_TOKENS", "ai21_error", "cut", "routes"]

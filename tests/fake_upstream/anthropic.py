"""Anthropic's Messages API wire format, after Anthropic's published API reference.

`POST /v1/messages` with `x-api-key: <key>` and an `anthropic-version` header; the body needs
`model`, `max_tokens` and `messages` (user/assistant turns, alternating, starting with the user: the
strict behaviour of Anthropic's earlier API versions and of compatible proxies); `system` is a
top-level field; fields the API does not know (`n`, `stop`, `presence_penalty`...) are refused, as
Anthropic does. Errors are `{"type": "error", "error": {"type", "message"}, "request_id"}`; every
answer carries a `request-id` header.

Answers are deterministic: `Fake answer to: <last user message>` in one `text` block, cut at the
first of `stop_sequences` (stop_reason `stop_sequence`, with `stop_sequence` set), then at
`max_tokens` tokens (stop_reason `max_tokens`), else stop_reason `end_turn`. Tokens are counted as
the OpenAI fake counts them; `input_tokens` are those of `system` and every message content.
Streams (`stream: true`) follow Anthropic's event sequence: `message_start` (with `usage.input_tokens`
and an initial `output_tokens` of 1), `content_block_start`, a `ping`, one `content_block_delta`
(`text_delta`) per word, `content_block_stop`, `message_delta` (`stop_reason`, `stop_sequence`, the
cumulative `usage.output_tokens`), `message_stop`. The `stream-error` fault sends an `error` event
(`overloaded_error`) after the first text delta.
Faults: `tests.fake_upstream.faults`, chosen by the queue or a `fault-<spec>` model name.
"""

from __future__ import annotations

import itertools
from typing import Any

from aiohttp import web

from tests.fake_upstream.faults import choose_fault, play
from tests.fake_upstream.openai import TOKEN_PATTERN, count_tokens
from tests.fake_upstream.sse import sse_frame, words, write_stream
from tests.fake_upstream.state import FakeState

MODELS = ("claude-3-5-haiku-latest", "claude-sonnet-4-5")
ALLOWED_FIELDS = frozenset(
    {
        "model",
        "max_tokens",
        "messages",
        "system",
        "temperature",
        "top_p",
        "top_k",
        "stop_sequences",
        "stream",
        "metadata",
        "tools",
        "tool_choice",
    }
)
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_ids = itertools.count(1)


def _request_id() -> str:
    return f"req_fake{next(_ids):06d}"


class VendorError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def anthropic_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """An error answer in Anthropic's shape (also the fault player's responder)."""
    error_type = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    if status == 529:
        message = "Overloaded"
    request_id = _request_id()
    return web.json_response(
        {"type": "error", "error": {"type": error_type, "message": message}, "request_id": request_id},
        status=status,
        headers={"request-id": request_id, **(headers or {})},
    )


# ---------------------------------------------------------------- validation


def _text_of(content: Any, where: str) -> str:
    """A message's or system's text: a string, or a list of `text` blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str) for b in content
    ):
        return "".join(b["text"] for b in content)
    raise VendorError(400, f"{where}: Input should be a valid string or a list of content blocks")


def _check_number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise VendorError(400, f"{name}: Input should be a valid number")
    if value < low:
        raise VendorError(400, f"{name}: Input should be greater than or equal to {low:g}")
    if value > high:
        raise VendorError(400, f"{name}: Input should be less than or equal to {high:g}")


def validate(body: dict[str, Any]) -> list[dict[str, str]]:
    """Check a Messages request as Anthropic does; the messages as (role, text) dicts."""
    extra = sorted(set(body) - ALLOWED_FIELDS)
    if extra:
        raise VendorError(400, f"{extra[0]}: Extra inputs are not permitted")
    for name in ("model", "max_tokens", "messages"):
        if body.get(name) is None:
            raise VendorError(400, f"{name}: Field required")
    max_tokens = body["max_tokens"]
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise VendorError(400, "max_tokens: Input should be greater than or equal to 1")
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        raise VendorError(400, "messages: at least one message is required")
    turns: list[dict[str, str]] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise VendorError(400, f"messages.{i}: Field required")
        role = message["role"]
        if role == "system":
            raise VendorError(
                400,
                'messages: Unexpected role "system". The Messages API accepts a top-level `system` '
                "parameter, not \"system\" as an input message role.",
            )
        if role not in ("user", "assistant"):
            raise VendorError(400, f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if i == 0 and role != "user":
            raise VendorError(400, 'messages: first message must use the "user" role')
        if turns and turns[-1]["role"] == role:
            raise VendorError(
                400,
                f'messages: roles must alternate between "user" and "assistant", but found multiple '
                f'"{role}" roles in a row',
            )
        turns.append({"role": role, "content": _text_of(message["content"], f"messages.{i}.content")})
    if "system" in body:
        _text_of(body["system"], "system")
    _check_number(body, "temperature", 0, 1)
    _check_number(body, "top_p", 0, 1)
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
        raise VendorError(400, "stop_sequences: Input should be a valid list of strings")
    if body.get("stream") not in (None, True, False):
        raise VendorError(400, "stream: Input should be a valid boolean")
    return turns


# ---------------------------------------------------------------- the answer


def shape_answer(text: str, body: dict[str, Any]) -> tuple[str, str, str | None]:
    """Cut `text` as `stop_sequences` and `max_tokens` ask: (text, stop_reason, stop_sequence)."""
    hits = [(text.index(s), s) for s in body.get("stop_sequences") or [] if s and s in text]
    first = min(hits) if hits else None
    if first is not None:
        text = text[: first[0]]
    max_tokens = body["max_tokens"]
    tokens = list(TOKEN_PATTERN.finditer(text))
    if len(tokens) > max_tokens:
        return text[: tokens[max_tokens - 1].end()], "max_tokens", None
    if first is not None:
        return text, "stop_sequence", first[1]
    return text, "end_turn", None


async def stream_answer(
    request: web.Request, body: dict[str, Any], text: str, stop_reason: str, stop_sequence: str | None,
    input_tokens: int,
) -> web.StreamResponse:
    """The answer as Anthropic's event stream (stream faults played after the first text delta)."""
    message = {
        "id": f"msg_fake{next(_ids):06d}", "type": "message", "role": "assistant", "model": body["model"],
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1},
    }
    frames = [
        sse_frame({"type": "message_start", "message": message}, "message_start"),
        sse_frame({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                  "content_block_start"),
        sse_frame({"type": "ping"}, "ping"),
    ]
    first_text = len(frames)
    for piece in words(text):
        frames.append(sse_frame({"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": piece}}, "content_block_delta"))
    frames += [
        sse_frame({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        sse_frame({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                   "usage": {"output_tokens": count_tokens(text)}}, "message_delta"),
        sse_frame({"type": "message_stop"}, "message_stop"),
    ]
    error = sse_frame({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "error")
    return await write_stream(request, frames, first_text=first_text, error_frame=error,
                              headers={"request-id": _request_id()})


async def answer(request: web.Request, body: dict[str, Any], turns: list[dict[str, str]]) -> web.StreamResponse:
    last_user = next(t["content"] for t in reversed(turns) if t["role"] == "user")
    text, stop_reason, stop_sequence = shape_answer(f"Fake answer to: {last_user}", body)
    system = _text_of(body["system"], "system") if "system" in body else ""
    input_tokens = count_tokens(system) + sum(count_tokens(t["content"]) for t in turns)
    if body.get("stream"):
        return await stream_answer(request, body, text, stop_reason, stop_sequence, input_tokens)
    request_id = _request_id()
    return web.json_response(
        {
            "id": f"msg_fake{next(_ids):06d}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [{"type": "text", "text": text}],
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": {"input_tokens": input_tokens, "output_tokens": count_tokens(text)},
        },
        headers={"request-id": request_id},
    )


def _auth(request: web.Request, state: FakeState) -> web.Response | None:
    key = request.headers.get("x-api-key")
    if not key:
        return anthropic_error(401, "x-api-key header is required")
    if key not in state.credentials.anthropic_keys:
        return anthropic_error(401, "invalid x-api-key")
    return None


def routes(state: FakeState) -> list[web.RouteDef]:
    """This vendor's routes; the server adds them to its app."""

    async def messages(request: web.Request) -> web.StreamResponse:
        try:
            try:
                body = await request.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise VendorError(400, "There was an error parsing the body: expected a JSON object")
            if fault := choose_fault(state.take_fault(), body.get("model")):
                played = await play(fault, request, anthropic_error)
                if played is not None:
                    return played
            if (denied := _auth(request, state)) is not None:
                return denied
            if not request.headers.get("anthropic-version"):
                raise VendorError(400, "anthropic-version: header is required")
            return await answer(request, body, validate(body))
        except VendorError as exc:
            return anthropic_error(exc.status, exc.message)

    return [web.post("/v1/messages", messages)]


__all__ = ["anthropic_error", "routes", "shape_answer", "validate"]

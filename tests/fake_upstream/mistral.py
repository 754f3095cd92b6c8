"""Mistral AI's wire format, after Mistral's API reference: `POST /v1/chat/completions` and
`POST /v1/embeddings` with `Authorization: Bearer <key>`, served here under `/mistral/v1`.

The bodies and answers are OpenAI's (the OpenAI fake's answers are reused), with Mistral's
differences:

- Unknown fields are refused with 422 and Mistral's validation body
  `{"object": "error", "message": {"detail": [{"type": "extra_forbidden", "loc": ["body", name],
  "msg": "Extra inputs are not permitted", ...}]}, "type": "invalid_request_message_error", ...}`,
  which catches `stream_options` (Mistral has none) and OpenAI-only names leaking through.
- `temperature` above 1 is refused the same way (Mistral's documented 0..1), which catches an
  adapter that forgets to rescale OpenAI's 0..2.
- A missing or wrong key answers 401 `{"message": "Unauthorized", "request_id": ...}`; other errors
  are `{"object": "error", "message", "type": "invalid_request_error", "param": null, "code": null}`.
- Streams carry the usage on their last chunk unasked, end with `data: [DONE]`.
"""

from __future__ import annotations

import itertools
from typing import Any

from aiohttp import web

from tests.fake_upstream import openai as openai_fake
from tests.fake_upstream.faults import choose_fault, play
from tests.fake_upstream.openai import VendorError
from tests.fake_upstream.state import FakeState

PREFIX = "/mistral/v1"
CHAT_FIELDS = frozenset(
    {
        "model", "messages", "temperature", "top_p", "max_tokens", "stream", "stop", "random_seed",
        "response_format", "tools", "tool_choice", "presence_penalty", "frequency_penalty", "n",
        "prediction", "parallel_tool_calls", "prompt_mode", "safe_prompt",
    }
)
EMBED_FIELDS = frozenset({"model", "input", "output_dimension", "output_dtype", "encoding_format"})
_ids = itertools.count(1)


class MistralValidation(Exception):
    def __init__(self, detail: list[dict[str, Any]]) -> None:
        super().__init__("validation failed")
        self.detail = detail


def mistral_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    if status == 401:
        body: dict[str, Any] = {"message": "Unauthorized", "request_id": f"req-{next(_ids)}"}
    else:
        kind = "invalid_request_error" if status < 500 else "internal_server_error"
        body = {"object": "error", "message": message, "type": kind, "param": None, "code": None}
    return web.json_response(body, status=status, headers=headers)


def validation_error(detail: list[dict[str, Any]]) -> web.Response:
    body = {"object": "error", "message": {"detail": detail}, "type": "invalid_request_message_error",
            "param": None, "code": None}
    return web.json_response(body, status=422)


def _check(body: dict[str, Any], known: frozenset[str]) -> None:
    detail = [
        {"type": "extra_forbidden", "loc": ["body", name], "msg": "Extra inputs are not permitted",
         "input": body[name]}
        for name in body
        if name not in known
    ]
    temperature = body.get("temperature")
    if isinstance(temperature, int | float) and temperature > 1:
        detail.append({"type": "less_than_equal", "loc": ["body", "temperature"],
                       "msg": "Input should be less than or equal to 1", "input": temperature})
    if detail:
        raise MistralValidation(detail)


def endpoint(state: FakeState, answer: openai_fake.Handler, known: frozenset[str]) -> openai_fake.Endpoint:
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            body = await openai_fake._json_body(request)
            if fault := choose_fault(state.take_fault(), body.get("model")):
                played = await play(fault, request, mistral_error)
                if played is not None:
                    return played
            auth = request.headers.get("Authorization", "")
            if not auth.startswith("Bearer ") or auth[7:].strip() not in state.credentials.mistral_keys:
                return mistral_error(401, "Unauthorized")
            _check(body, known)
            if not body.get("model"):
                raise VendorError(400, "model is required")
            if body.get("stream"):  # Mistral reports usage on its last chunk without being asked
                body = {**body, "stream_options": {"include_usage": True}}
            return await answer(request, body, str(body["model"]))
        except MistralValidation as exc:
            return validation_error(exc.detail)
        except VendorError as exc:
            return mistral_error(exc.status, exc.message)

    return handle


def routes(state: FakeState) -> list[web.RouteDef]:
    return [
        web.post(f"{PREFIX}/chat/completions", endpoint(state, openai_fake.chat_answer, CHAT_FIELDS)),
        web.post(f"{PREFIX}/embeddings", endpoint(state, openai_fake.embeddings_answer, EMBED_FIELDS)),
    ]


__all__ = ["PREFIX", "routes"]

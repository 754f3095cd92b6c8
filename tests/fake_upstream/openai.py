"""OpenAI's and Azure OpenAI's wire format, after OpenAI's published API reference.

OpenAI: `POST /v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `GET /v1/models`, with
`Authorization: Bearer <key>`; errors are `{"error": {"message", "type", "param", "code"}}` and a
wrong key's 401 echoes it partially masked, as OpenAI does.
Azure: `POST /openai/deployments/{deployment}/{chat/completions|completions|embeddings}
?api-version=...` with `api-key: <key>` (or `Authorization: Bearer <Entra ID token>` for azuread);
the deployment names the model, the body needs none.

Answers are deterministic: chat answers `Fake answer to: <last user message>`, completions
`Fake completion of: <prompt>`, both cut at the first `stop` sequence, then at `max_tokens`
tokens (finish_reason `length`). Tokens are counted with `count_tokens` (regex `\\w+|[^\\w\\s]`);
prompt tokens are those of all message contents. Embedding `data` items come back in reverse
order (each carries its `index`, as the API allows), so clients must sort by index.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tests.fake_upstream.faults import STREAM_FAULT, choose_fault, play
from tests.fake_upstream.state import FakeState

TOKEN_PATTERN = re.compile(r"\w+|[^\w\s]")
EMBEDDING_DIMENSIONS = 8
MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-3.5-turbo-instruct", "text-embedding-3-small")
_ids = itertools.count(1)

Handler = Callable[[web.Request, dict[str, Any], str], Awaitable[web.StreamResponse]]
Endpoint = Callable[[web.Request], Awaitable[web.StreamResponse]]


def count_tokens(text: str) -> int:
    return len(TOKEN_PATTERN.findall(text))


def shape_answer(text: str, body: dict[str, Any]) -> tuple[str, str]:
    """Cut `text` as the request's `stop` and `max_tokens` ask: (text, finish_reason)."""
    stops = body.get("stop") or []
    for stop in [stops] if isinstance(stops, str) else stops:
        if stop and stop in text:
            text = text[: text.index(stop)]
    max_tokens = body.get("max_tokens")
    tokens = list(TOKEN_PATTERN.finditer(text))
    if isinstance(max_tokens, int) and len(tokens) > max_tokens:
        return (text[: tokens[max_tokens - 1].end()] if max_tokens else ""), "length"
    return text, "stop"


def fake_embedding(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round((b - 128) / 128, 6) for b in digest[:EMBEDDING_DIMENSIONS]]


# ---------------------------------------------------------------- error bodies


class VendorError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code


def openai_error(
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    *,
    type_: str | None = None,
    param: str | None = None,
    code: str | None = None,
) -> web.Response:
    default_type = {429: "requests"}.get(status, "server_error" if status >= 500 else "invalid_request_error")
    default_code = {429: "rate_limit_exceeded"}.get(status)
    error = {"message": message, "type": type_ or default_type, "param": param, "code": code or default_code}
    return web.json_response({"error": error}, status=status, headers=headers)


def azure_error(
    status: int, message: str, headers: dict[str, str] | None = None, *, code: str | None = None
) -> web.Response:
    return web.json_response(
        {"error": {"code": code or str(status), "message": message}}, status=status, headers=headers
    )


def masked(key: str) -> str:
    """A key as OpenAI echoes it in a 401: first 8 and last 4 characters, stars between."""
    if len(key) <= 12:
        return "*" * len(key)
    return key[:8] + "*" * (len(key) - 12) + key[-4:]


# ---------------------------------------------------------------- validation and answers


def _require(body: dict[str, Any], name: str) -> Any:
    if name not in body or body[name] is None:
        raise VendorError(
            400, f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
        )
    return body[name]


def _check_common(body: dict[str, Any]) -> None:
    temperature = body.get("temperature")
    if temperature is not None and (not isinstance(temperature, int | float) or not 0 <= temperature <= 2):
        raise VendorError(
            400,
            f"Invalid 'temperature': expected a value between 0 and 2, but got {temperature} instead.",
            param="temperature",
            code="decimal_above_max_value",
        )
    n = body.get("n", 1)
    if not isinstance(n, int) or n < 1 or n > 128:
        raise VendorError(
            400,
            f"Invalid 'n': expected an integer from 1 to 128, but got {n} instead.",
            param="n",
            code="integer_below_min_value",
        )
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise VendorError(
            400,
            f"Invalid 'max_tokens': integer below minimum value. Expected a value "
            f">= 1, but got {max_tokens} instead.",
            param="max_tokens",
            code="integer_below_min_value",
        )
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str) and (not isinstance(stop, list) or len(stop) > 4):
        raise VendorError(
            400,
            "Invalid 'stop': expected a string or an array of at most 4 strings.",
            param="stop",
            code="invalid_type",
        )


def _usage(prompt: int, completion: int | None) -> dict[str, int]:
    usage = {"prompt_tokens": prompt, "total_tokens": prompt + (completion or 0)}
    if completion is not None:
        usage["completion_tokens"] = completion
    return usage


async def stream_answer(
    request: web.Request, body: dict[str, Any], model: str, *, texts: list[str], finish: str, prompt: int, chat: bool
) -> web.StreamResponse:
    """OpenAI's SSE stream: a role chunk (chat), a chunk per word, a finish chunk, the usage chunk when
    `stream_options.include_usage` is set, then `data: [DONE]`; stream faults played on the way."""
    fault = request.get(STREAM_FAULT)
    delay = fault.seconds if fault is not None and fault.kind == "stream-slow" else 0.0
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    ident, created = f"chatcmpl-fake{next(_ids)}", int(time.time())
    kind = "chat.completion.chunk" if chat else "text_completion"

    def frame(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
        chunk = {"id": ident, "object": kind, "created": created, "model": model, "choices": choices}
        if usage is not None:
            chunk["usage"] = usage
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    def piece(i: int, text: str | None, finish_reason: str | None = None, role: bool = False) -> dict[str, Any]:
        if chat:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
            if text is not None:
                delta["content"] = text
            return {"index": i, "delta": delta, "finish_reason": finish_reason}
        return {"index": i, "text": text or "", "finish_reason": finish_reason}

    words = [re.findall(r"\s*\S+\s*|\s+", t) for t in texts]
    frames = [frame([piece(i, None, role=True) for i in range(len(texts))])] if chat else []
    for step in range(max((len(w) for w in words), default=0)):
        frames.append(frame([piece(i, w[step]) for i, w in enumerate(words) if step < len(w)]))
    frames.append(frame([piece(i, None if chat else "", finish) for i in range(len(texts))]))
    if (body.get("stream_options") or {}).get("include_usage"):
        completion = sum(count_tokens(t) for t in texts)
        frames.append(frame([], _usage(prompt, completion)))
    for index, data in enumerate(frames):
        if delay:
            await asyncio.sleep(delay)
        await response.write(data)
        if index == 1 and fault is not None and fault.kind == "stream-error":
            error = {"error": {"message": "The server had an error while processing your request.",
                               "type": "server_error", "param": None, "code": None}}
            await response.write(b"data: " + json.dumps(error).encode() + b"\n\n")
            return response
        if index == 1 and fault is not None and fault.kind == "stream-cut":
            assert request.transport is not None
            request.transport.close()
            return response
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def chat_answer(request: web.Request, body: dict[str, Any], model: str) -> web.StreamResponse:
    messages = _require(body, "messages")
    if not isinstance(messages, list) or not messages:
        raise VendorError(
            400,
            "Invalid 'messages': expected a non-empty array of messages.",
            param="messages",
            code="invalid_type",
        )
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise VendorError(
                400,
                f"Missing required parameter: 'messages[{i}].role' or 'content'.",
                param=f"messages[{i}]",
                code="missing_required_parameter",
            )
    _check_common(body)
    last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    text, finish = shape_answer(f"Fake answer to: {last_user}", body)
    n = body.get("n", 1)
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": text, "refusal": None},
            "logprobs": None,
            "finish_reason": finish,
        }
        for i in range(n)
    ]
    prompt = sum(count_tokens(str(m["content"])) for m in messages)
    if body.get("stream"):
        return await stream_answer(request, body, model, texts=[text] * n, finish=finish, prompt=prompt, chat=True)
    return web.json_response(
        {
            "id": f"chatcmpl-fake{next(_ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            "usage": _usage(prompt, n * count_tokens(text)),
            "system_fingerprint": "fp_fake",
        }
    )


async def completions_answer(request: web.Request, body: dict[str, Any], model: str) -> web.StreamResponse:
    prompt = _require(body, "prompt")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
        raise VendorError(
            400,
            "Invalid 'prompt': expected a string or an array of strings.",
            param="prompt",
            code="invalid_type",
        )
    _check_common(body)
    n = body.get("n", 1)
    choices: list[dict[str, Any]] = []
    completion = 0
    for p in prompts:
        text, finish = shape_answer(f"Fake completion of: {p}", body)
        for _ in range(n):
            choices.append({"text": text, "index": len(choices), "logprobs": None, "finish_reason": finish})
            completion += count_tokens(text)
    if body.get("stream"):
        texts = [c["text"] for c in choices]
        finish = choices[0]["finish_reason"] if choices else "stop"
        prompt_tokens = sum(count_tokens(p) for p in prompts)
        return await stream_answer(request, body, model, texts=texts, finish=finish, prompt=prompt_tokens, chat=False)
    return web.json_response(
        {
            "id": f"cmpl-fake{next(_ids)}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            "usage": _usage(sum(count_tokens(p) for p in prompts), completion),
        }
    )


async def embeddings_answer(request: web.Request, body: dict[str, Any], model: str) -> web.StreamResponse:
    raw = _require(body, "input")
    inputs = [raw] if isinstance(raw, str) else raw
    if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) and t for t in inputs):
        raise VendorError(
            400, "'$.input' is invalid. Please check the API reference.", param="input", code="invalid_type"
        )
    data = [{"object": "embedding", "index": i, "embedding": fake_embedding(t)} for i, t in enumerate(inputs)]
    return web.json_response(
        {
            "object": "list",
            "data": list(reversed(data)),
            "model": model,
            "usage": _usage(sum(count_tokens(t) for t in inputs), None),
        }
    )


# ---------------------------------------------------------------- the two dialects


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise VendorError(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means "
            "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
            "payload.)",
        )
    return body


def _openai_auth(request: web.Request, state: FakeState) -> web.Response | None:
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer ") or not auth[7:].strip():
        return openai_error(
            401,
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
    key = auth[7:].strip()
    if key not in state.credentials.openai_keys:
        return openai_error(
            401,
            f"Incorrect API key provided: {masked(key)}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )
    return None


def _azure_auth(request: web.Request, state: FakeState) -> web.Response | None:
    key = request.headers.get("api-key")
    auth = request.headers.get("Authorization", "")
    if key is not None and key in state.credentials.azure_keys:
        return None
    if auth.startswith("Bearer ") and auth[7:].strip() in state.credentials.azuread_tokens:
        return None
    return azure_error(
        401,
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure "
        "to provide a valid key for an active subscription and use a correct regional API "
        "endpoint for your resource.",
    )


def openai_endpoint(state: FakeState, answer: Handler) -> Endpoint:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        try:
            body = await _json_body(request)
            model = body.get("model")
            if fault := choose_fault(state.take_fault(), model):
                played = await play(fault, request, openai_error)
                if played is not None:
                    return played
            if (denied := _openai_auth(request, state)) is not None:
                return denied
            if not model:
                raise VendorError(400, "you must provide a model parameter")
            return await answer(request, body, str(model))
        except VendorError as exc:
            return openai_error(exc.status, exc.message, type_=exc.type, param=exc.param, code=exc.code)

    return endpoint


def azure_endpoint(state: FakeState, answer: Handler) -> Endpoint:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        deployment = request.match_info["deployment"]
        try:
            body = await _json_body(request)
            if fault := choose_fault(state.take_fault(), deployment):
                played = await play(fault, request, azure_error)
                if played is not None:
                    return played
            if (denied := _azure_auth(request, state)) is not None:
                return denied
            if not request.query.get("api-version"):
                return azure_error(404, "Resource not found")
            return await answer(request, body, deployment)
        except VendorError as exc:
            # Azure passes OpenAI's validation errors through in OpenAI's shape.
            return openai_error(exc.status, exc.message, type_=exc.type, param=exc.param, code=exc.code)

    return endpoint


def routes(state: FakeState) -> list[web.RouteDef]:
    """This vendor's routes; the server adds them to its app."""

    async def models(request: web.Request) -> web.Response:
        if (denied := _openai_auth(request, state)) is not None:
            return denied
        data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "openai"} for m in MODELS]
        return web.json_response({"object": "list", "data": data})

    answers: dict[str, Handler] = {
        "chat/completions": chat_answer,
        "completions": completions_answer,
        "embeddings": embeddings_answer,
    }
    table = [web.get("/v1/models", models)]
    for path, answer in answers.items():
        table.append(web.post(f"/v1/{path}", openai_endpoint(state, answer)))
        table.append(web.post(f"/openai/deployments/{{deployment}}/{path}", azure_endpoint(state, answer)))
    return table


__all__ = ["count_tokens", "fake_embedding", "masked", "routes", "shape_answer"]

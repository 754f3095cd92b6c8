"""OpenAI-compatible vendors (Groq, DeepSeek, xAI, OpenRouter, TogetherAI, Ollama, vLLM): the OpenAI
fake's answers and stream writer behind each vendor's own path prefix, key and error body.

Each `Dialect` mounts the vendor's paths under its prefix on the fake (so one server can play them
all), checks its key in `Authorization: Bearer <key>` (Ollama: none), refuses what the vendor
documents as unsupported, and renders errors the way the vendor does:

- groq, `/groq/openai/v1`: chat/completions only; `n` must be 1; `logprobs`, `logit_bias`,
  `top_logprobs` → 400.
- deepseek, `/deepseek`: chat/completions and FIM under `beta/completions`; no `n`; the 401 echoes
  the key's last 4 characters.
- xai, `/xai/v1`: chat, completions, embeddings; errors are `{"code", "error"}`; the 401 echoes the
  key masked.
- openrouter, `/openrouter/api/v1`: chat, completions, embeddings; no `n`; errors are
  `{"error": {"code": <int>, "message"}}`.
- togetherai, `/together/v1`: chat, completions, embeddings; usage on every stream (no
  `stream_options` needed); finish_reason `eos`; embeddings answer without usage.
- ollama, `/ollama/v1`: chat, completions, embeddings; no key checked; no `n`.
- vllm, `/vllm/v1`: chat, completions, embeddings; the key is checked only if one is configured;
  errors are `{"object": "error", "message", "type", "code"}`.

Unknown paths answer aiohttp's plain 404 (e.g. DeepSeek's non-beta `/completions`, Groq's
`/embeddings`), as a vendor without that endpoint does. Faults (queued or `fault-<spec>` model
names) play as for OpenAI, with the vendor's error body.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fake_upstream import openai as openai_fake
from tests.fake_upstream.faults import choose_fault, play
from tests.fake_upstream.openai import VendorError
from tests.fake_upstream.state import FakeState

ErrorBody = Callable[[int, str, dict[str, str] | None], web.Response]
CHAT, COMPLETIONS, EMBEDDINGS = "chat/completions", "completions", "embeddings"


# ---------------------------------------------------------------- each vendor's error body


def _openai_shaped(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return openai_fake.openai_error(status, message, headers)


def _xai_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    code = {400: "Client specified an invalid argument", 401: "Client specified an invalid argument",
            429: "Too many requests"}.get(status, "Internal error")
    return web.json_response({"code": code, "error": message}, status=status, headers=headers)


def _openrouter_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": status, "message": message}}, status=status, headers=headers)


def _vllm_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    kind = "BadRequestError" if status < 500 else "InternalServerError"
    body = {"object": "error", "message": message, "type": kind, "param": None, "code": status}
    return web.json_response(body, status=status, headers=headers)


def _masked_tail(key: str) -> str:
    return "****" + key[-4:]


def _xai_masked(key: str) -> str:
    return key[:2] + "***" + key[-2:]


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str
    prefix: str
    paths: dict[str, str]  # our path (relative to the prefix) → the answer kind: chat / completions / embeddings
    error: ErrorBody = _openai_shaped
    authenticated: bool = True
    one_candidate: bool = False
    refused_fields: tuple[str, ...] = ()
    usage_always: bool = False  # the stream carries usage whether or not stream_options asks
    finish_reason: str | None = None  # what the vendor says instead of OpenAI's "stop"
    embeddings_usage: bool = True
    bad_key_message: Callable[[str], str] = lambda key: "Invalid API Key"


DIALECTS: tuple[Dialect, ...] = (
    Dialect("groq", "/groq/openai/v1", {CHAT: CHAT}, one_candidate=True,
            refused_fields=("logprobs", "logit_bias", "top_logprobs")),
    Dialect("deepseek", "/deepseek", {CHAT: CHAT, "beta/completions": COMPLETIONS}, one_candidate=True,
            bad_key_message=lambda key: f"Authentication Fails, Your api key: {_masked_tail(key)} is invalid"),
    Dialect("xai", "/xai/v1", {CHAT: CHAT, COMPLETIONS: COMPLETIONS, EMBEDDINGS: EMBEDDINGS}, error=_xai_error,
            bad_key_message=lambda key: (f"Incorrect API key provided: {_xai_masked(key)}. "
                                         "You can obtain an API key from https://console.x.ai.")),
    Dialect("openrouter", "/openrouter/api/v1", {CHAT: CHAT, COMPLETIONS: COMPLETIONS, EMBEDDINGS: EMBEDDINGS},
            error=_openrouter_error, one_candidate=True, bad_key_message=lambda key: "User not found."),
    Dialect("togetherai", "/together/v1", {CHAT: CHAT, COMPLETIONS: COMPLETIONS, EMBEDDINGS: EMBEDDINGS},
            usage_always=True, finish_reason="eos", embeddings_usage=False,
            bad_key_message=lambda key: ("Invalid API key provided. You can find your API key at "
                                         "https://api.together.xyz/settings/api-keys.")),
    Dialect("ollama", "/ollama/v1", {CHAT: CHAT, COMPLETIONS: COMPLETIONS, EMBEDDINGS: EMBEDDINGS},
            authenticated=False, one_candidate=True),
    Dialect("vllm", "/vllm/v1", {CHAT: CHAT, COMPLETIONS: COMPLETIONS, EMBEDDINGS: EMBEDDINGS}, error=_vllm_error,
            bad_key_message=lambda key: "Unauthorized"),
)
BY_NAME = {dialect.name: dialect for dialect in DIALECTS}

_ANSWERS: dict[str, openai_fake.Handler] = {
    CHAT: openai_fake.chat_answer,
    COMPLETIONS: openai_fake.completions_answer,
    EMBEDDINGS: openai_fake.embeddings_answer,
}


# ---------------------------------------------------------------- the endpoint


def _denied(dialect: Dialect, request: web.Request, state: FakeState) -> web.Response | None:
    keys = state.credentials.compatible_keys.get(dialect.name, set())
    if not dialect.authenticated or (dialect.name == "vllm" and not keys):
        return None  # Ollama checks no key; vLLM only when started with --api-key
    auth = request.headers.get("Authorization", "")
    key = auth[7:].strip() if auth.startswith("Bearer ") else ""
    if not key:
        return dialect.error(401, "No API key provided.", None)
    if key not in keys:
        return dialect.error(401, dialect.bad_key_message(key), None)
    return None


def _check_quirks(dialect: Dialect, body: dict[str, Any]) -> None:
    for name in dialect.refused_fields:
        if name in body:
            raise VendorError(400, f"'{name}' : is not supported with this model")
    if dialect.one_candidate and body.get("n", 1) != 1:
        raise VendorError(400, "'n' : number must be at most 1")


def endpoint(dialect: Dialect, kind: str, state: FakeState) -> openai_fake.Endpoint:
    answer = _ANSWERS[kind]

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            body = await openai_fake._json_body(request)
            model = body.get("model")
            if fault := choose_fault(state.take_fault(), model):
                played = await play(fault, request, dialect.error)
                if played is not None:
                    return played
            if (denied := _denied(dialect, request, state)) is not None:
                return denied
            if not model:
                raise VendorError(400, "you must provide a model parameter")
            _check_quirks(dialect, body)
            if dialect.usage_always and body.get("stream"):
                body = {**body, "stream_options": {"include_usage": True}}
            response = await answer(request, body, str(model))
            if isinstance(response, web.Response) and response.body is not None:
                return _vendor_body(dialect, kind, response)
            return response
        except VendorError as exc:
            return dialect.error(exc.status, exc.message, None)

    return handle


def _vendor_body(dialect: Dialect, kind: str, response: web.Response) -> web.Response:
    """The OpenAI fake's JSON answer with the vendor's differences applied."""
    if dialect.finish_reason is None and dialect.embeddings_usage:
        return response
    assert isinstance(response.body, bytes)
    data = json.loads(response.body)
    for choice in data.get("choices") or []:
        if dialect.finish_reason and choice.get("finish_reason") == "stop":
            choice["finish_reason"] = dialect.finish_reason
    if kind == EMBEDDINGS and not dialect.embeddings_usage:
        data.pop("usage", None)
    return web.json_response(data, status=response.status)


def routes(state: FakeState) -> list[web.RouteDef]:
    """Every dialect's routes under its prefix."""
    table: list[web.RouteDef] = []
    for dialect in DIALECTS:
        for path, kind in dialect.paths.items():
            table.append(web.post(f"{dialect.prefix}/{path}", endpoint(dialect, kind, state)))
    return table


__all__ = ["BY_NAME", "DIALECTS", "Dialect", "routes"]

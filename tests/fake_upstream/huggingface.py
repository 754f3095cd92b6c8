"""Hugging Face Text Generation Inference (TGI)'s wire format, after TGI's OpenAPI document and router.

Two mounts of the same server, because TGI's `/v1/chat/completions` would collide with OpenAI's:
`/tgi/...` is a plain TGI server (no auth: TGI checks none, and ignores an `Authorization` header);
`/hf-endpoint/...` is a protected Hugging Face Inference Endpoint that wants
`Authorization: Bearer <HF token>` and answers 401 otherwise.

Routes under each: `POST /generate` and `/generate_stream` (`{"inputs", "parameters"}`) and
`POST /v1/chat/completions` (OpenAI-shaped, `stream` and `stream_options.include_usage`).
Errors are `{"error": "...", "error_type": "..."}`: 422 `validation` with TGI's messages (`temperature`
must be strictly positive, `top_p` in (0, 1), at most 4 stop sequences, no `decoder_input_details` when
streaming...), 429 `overloaded`, 424 `generation`, 500 `incomplete_generation`. Stricter than TGI in
one way, on purpose: an unknown `parameters` field is a 422 (TGI silently ignores it, so a misnamed
parameter would go unnoticed against the real server).

Answers are deterministic: `Fake TGI completion of: <inputs>` or `Fake TGI answer to: <last user
message>`; a stop sequence cuts the text after the sequence (TGI keeps it, finish `stop_sequence`),
`max_new_tokens` cuts at that many tokens (`length`), else the end-of-sequence token ends it
(`eos_token`, counted in `generated_tokens` and streamed as a special token). The prompt's tokens are
`count_tokens(inputs)` plus one BOS token: `prefill`, `x-prompt-tokens` and `details.input_length` all
say so. Stream faults are played after the first token event.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tests.fake_upstream.faults import choose_fault, play
from tests.fake_upstream.openai import TOKEN_PATTERN, count_tokens
from tests.fake_upstream.sse import words, write_stream
from tests.fake_upstream.state import FakeState

OPEN_PREFIX = "/tgi"
ENDPOINT_PREFIX = "/hf-endpoint"
MODEL_ID = "meta-llama/Llama-3.1-8B-Instruct"
FINGERPRINT = "3.0.0-native"
MAX_STOP_SEQUENCES = 4
EOS = "</s>"
PARAMETERS = frozenset(
    {
        "adapter_id", "best_of", "decoder_input_details", "details", "do_sample", "frequency_penalty",
        "grammar", "max_new_tokens", "repetition_penalty", "return_full_text", "seed", "stop", "temperature",
        "top_k", "top_n_tokens", "top_p", "truncate", "typical_p", "watermark",
    }
)
Answer = Callable[[web.Request, dict[str, Any]], Awaitable[web.StreamResponse]]
Endpoint = Callable[[web.Request], Awaitable[web.StreamResponse]]


class TGIError(Exception):
    def __init__(self, status: int, message: str, error_type: str = "validation") -> None:
        super().__init__(message)
        self.status, self.message, self.error_type = status, message, error_type


_ERROR_TYPES = {422: "validation", 424: "generation", 429: "overloaded", 500: "incomplete_generation"}


def tgi_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """TGI's error body (also the fault player's responder)."""
    error_type = _ERROR_TYPES.get(status, "validation" if status < 500 else "generation")
    return web.json_response({"error": message, "error_type": error_type}, status=status, headers=headers)


def _invalid(message: str) -> TGIError:
    return TGIError(422, f"Input validation error: {message}")


# ---------------------------------------------------------------- validation (TGI's router rules)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_parameters(parameters: dict[str, Any], *, stream: bool) -> None:
    unknown = sorted(set(parameters) - PARAMETERS)
    if unknown:
        raise TGIError(422, f"Failed to deserialize the JSON body into the target type: parameters: unknown field "
                            f"`{unknown[0]}`")
    temperature = parameters.get("temperature")
    if temperature is not None and (not _number(temperature) or temperature <= 0):
        raise _invalid("`temperature` must be strictly positive")
    top_p = parameters.get("top_p")
    if top_p is not None and (not _number(top_p) or not 0 < top_p < 1):
        raise _invalid("`top_p` must be > 0.0 and < 1.0")
    frequency_penalty = parameters.get("frequency_penalty")
    if frequency_penalty is not None and (not _number(frequency_penalty) or not -2 <= frequency_penalty <= 2):
        raise _invalid("`frequency_penalty` must be >= -2.0 and <= 2.0")
    max_new_tokens = parameters.get("max_new_tokens")
    if max_new_tokens is not None and (not isinstance(max_new_tokens, int) or max_new_tokens < 1):
        raise _invalid("`max_new_tokens` must be strictly positive")
    stop = parameters.get("stop") or []
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise TGIError(422, "Failed to deserialize the JSON body into the target type: parameters.stop: "
                            "invalid type, expected a sequence of strings")
    if len(stop) > MAX_STOP_SEQUENCES:
        raise _invalid(f"`stop` supports up to {MAX_STOP_SEQUENCES} stop sequences. Given: {len(stop)}")
    if stream and parameters.get("decoder_input_details"):
        raise _invalid("`decoder_input_details` == true is not supported when streaming tokens")


def shape(text: str, parameters: dict[str, Any]) -> tuple[str, str]:
    """Cut `text` as TGI would: (text, finish_reason). A matched stop sequence stays in the text."""
    hits = [(text.index(s) + len(s), s) for s in parameters.get("stop") or [] if s and s in text]
    if hits:
        text = text[: min(hits)[0]]
    max_new_tokens = parameters.get("max_new_tokens")
    tokens = list(TOKEN_PATTERN.finditer(text))
    if isinstance(max_new_tokens, int) and len(tokens) > max_new_tokens:
        return text[: tokens[max_new_tokens - 1].end()], "length"
    return text, ("stop_sequence" if hits else "eos_token")


def prompt_tokens(text: str) -> int:
    return count_tokens(text) + 1  # the BOS token TGI's tokenizer adds


def generated_tokens(text: str, finish: str) -> int:
    return count_tokens(text) + (1 if finish == "eos_token" else 0)


# ---------------------------------------------------------------- /generate and /generate_stream


def _generate_body(body: dict[str, Any], *, stream: bool) -> tuple[str, dict[str, Any]]:
    inputs = body.get("inputs")
    if not isinstance(inputs, str):
        raise TGIError(422, "Failed to deserialize the JSON body into the target type: missing field `inputs`")
    if not inputs:
        raise _invalid("`inputs` cannot be empty")
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise TGIError(422, "Failed to deserialize the JSON body into the target type: parameters: invalid type")
    check_parameters(parameters, stream=stream)
    return inputs, parameters


async def generate(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    inputs, parameters = _generate_body(body, stream=False)
    text, finish = shape(f"Fake TGI completion of: {inputs}", parameters)
    n_prompt, n_generated = prompt_tokens(inputs), generated_tokens(text, finish)
    answer: dict[str, Any] = {"generated_text": text}
    if parameters.get("details", True) or parameters.get("decoder_input_details"):
        prefill = []
        if parameters.get("decoder_input_details"):
            prefill = [{"id": 1, "text": "<s>", "logprob": None}] + [
                {"id": 100 + i, "text": t, "logprob": -0.5} for i, t in enumerate(TOKEN_PATTERN.findall(inputs))
            ]
        answer["details"] = {
            "finish_reason": finish,
            "generated_tokens": n_generated,
            "seed": None,
            "prefill": prefill,
            "tokens": [{"id": 200 + i, "text": t, "logprob": -0.1, "special": False}
                       for i, t in enumerate(TOKEN_PATTERN.findall(text))],
        }
    headers = {"x-prompt-tokens": str(n_prompt), "x-generated-tokens": str(n_generated),
               "x-compute-type": "gpu+optimized"}
    return web.json_response(answer, headers=headers)


def _tgi_frame(data: dict[str, Any]) -> bytes:
    return b"data:" + json.dumps(data).encode() + b"\n\n"  # TGI writes no space after `data:`


async def generate_stream(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    inputs, parameters = _generate_body(body, stream=True)
    if (parameters.get("best_of") or 1) != 1:
        raise _invalid("`best_of` != 1 is not supported when streaming tokens")
    text, finish = shape(f"Fake TGI completion of: {inputs}", parameters)
    pieces = words(text)
    details = {
        "finish_reason": finish,
        "generated_tokens": generated_tokens(text, finish),
        "seed": None,
        "input_length": prompt_tokens(inputs),
    } if parameters.get("details", True) else None

    def event(index: int, piece: str, *, special: bool = False, last: bool = False) -> bytes:
        return _tgi_frame({
            "index": index,
            "token": {"id": 200 + index, "text": piece, "logprob": -0.1, "special": special},
            "generated_text": text if last else None,
            "details": details if last else None,
            "top_tokens": None,
        })

    frames = [event(i + 1, piece) for i, piece in enumerate(pieces)]
    if finish == "eos_token" or not frames:
        frames.append(event(len(frames) + 1, EOS, special=True, last=True))
    else:
        frames[-1] = event(len(frames), pieces[-1], last=True)
    error = _tgi_frame({"error": "Request failed during generation: Server error: CUDA out of memory.",
                        "error_type": "generation"})
    return await write_stream(request, frames, first_text=0, error_frame=error)


# ---------------------------------------------------------------- /v1/chat/completions


def _chat_body(body: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(last user message, the templated prompt, generate parameters) of a valid chat body."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise TGIError(422, "Failed to deserialize the JSON body into the target type: missing field `messages`")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant", "tool"):
            raise TGIError(422, f"Failed to deserialize the JSON body into the target type: messages[{i}]: "
                                "unknown variant")
        if not isinstance(message.get("content"), str):
            raise TGIError(422, f"Failed to deserialize the JSON body into the target type: messages[{i}].content")
    temperature = body.get("temperature")
    # As TGI's chat route does: temperature 0 means greedy, anything else goes to the generate checks.
    parameters: dict[str, Any] = {
        "max_new_tokens": body.get("max_tokens"),
        "temperature": None if temperature == 0 else temperature,
        "top_p": body.get("top_p"),
        "stop": body.get("stop"),
        "frequency_penalty": body.get("frequency_penalty"),
    }
    parameters = {k: v for k, v in parameters.items() if v is not None}
    check_parameters(parameters, stream=False)
    last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    template = "".join(f"<|{m['role']}|>{m['content']}" for m in messages)  # the chat template, roughly
    return last_user, template, parameters


async def chat(request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    last_user, template, parameters = _chat_body(body)
    text, finish = shape(f"Fake TGI answer to: {last_user}", parameters)
    finish_reason = "stop" if finish == "eos_token" else finish  # TGI's FinishReason::format(true)
    model = body.get("model") if body.get("model") not in (None, "tgi") else MODEL_ID
    usage = {"prompt_tokens": prompt_tokens(template), "completion_tokens": generated_tokens(text, finish)}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    created = int(time.time())
    if not body.get("stream"):
        return web.json_response({
            "object": "chat.completion", "id": "", "created": created, "model": model,
            "system_fingerprint": FINGERPRINT,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                         "finish_reason": finish_reason}],
            "usage": usage,
        })

    def chunk(content: str, finish_reason: str | None = None) -> bytes:
        data = {"object": "chat.completion.chunk", "id": "", "created": created, "model": model,
                "system_fingerprint": FINGERPRINT,
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": content}, "logprobs": None,
                             "finish_reason": finish_reason}],
                "usage": None}
        return b"data: " + json.dumps(data).encode() + b"\n\n"

    pieces = words(text)
    frames = [chunk(piece) for piece in pieces]
    if finish == "eos_token" or not frames:
        frames.append(chunk("", finish_reason))
    else:
        frames[-1] = chunk(pieces[-1], finish_reason)
    if (body.get("stream_options") or {}).get("include_usage"):
        final = {"object": "chat.completion.chunk", "id": "", "created": created, "model": model,
                 "system_fingerprint": FINGERPRINT, "choices": [], "usage": usage}
        frames.append(b"data: " + json.dumps(final).encode() + b"\n\n")
    frames.append(b"data: [DONE]\n\n")
    error = b"data: " + json.dumps(
        {"error": {"message": "Request failed during generation: Server error: CUDA out of memory.",
                   "http_status_code": 422}}
    ).encode() + b"\n\n"
    return await write_stream(request, frames, first_text=0, error_frame=error)


# ---------------------------------------------------------------- mounting


def _auth(request: web.Request, state: FakeState) -> web.Response | None:
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer ") or not auth[7:].strip():
        return web.json_response({"error": "Authorization header is missing or invalid"}, status=401)
    if auth[7:].strip() not in state.credentials.hf_tokens:
        return web.json_response({"error": "Authorization header is correct, but the token seems invalid"}, status=401)
    return None


def tgi_endpoint(state: FakeState, answer: Answer, *, protected: bool) -> Endpoint:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        try:
            try:
                body = await request.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise TGIError(400, "Failed to parse the request body as JSON")
            if fault := choose_fault(state.take_fault(), body.get("model")):
                played = await play(fault, request, tgi_error)
                if played is not None:
                    return played
            if protected and (denied := _auth(request, state)) is not None:
                return denied
            return await answer(request, body)
        except TGIError as exc:
            return web.json_response({"error": exc.message, "error_type": exc.error_type}, status=exc.status)

    return endpoint


def routes(state: FakeState) -> list[web.RouteDef]:
    """This vendor's routes, under both mounts; the server adds them to its app."""
    table: list[web.RouteDef] = []
    for prefix, protected in ((OPEN_PREFIX, False), (ENDPOINT_PREFIX, True)):
        table += [
            web.post(f"{prefix}/generate", tgi_endpoint(state, generate, protected=protected)),
            web.post(f"{prefix}/generate_stream", tgi_endpoint(state, generate_stream, protected=protected)),
            web.post(f"{prefix}/v1/chat/completions", tgi_endpoint(state, chat, protected=protected)),
        ]
    return table


__all__ = ["EOS", "generated_tokens", "prompt_tokens", "routes", "shape", "tgi_error"]

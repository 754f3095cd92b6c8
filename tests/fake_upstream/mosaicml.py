"""MosaicML Inference's wire format, as MLflow's adapter speaks it: `POST /mosaicml/{model}/v1/predict`.

The fake's `mosaicml_api_base` is `<url>/mosaicml`. Auth is the bare key in `Authorization` (no
`Bearer`); anything else is 401 `{"message": "Unauthorized"}`. Bodies are `{"inputs": [...],
"parameters": {...}}` → `{"outputs": [...]}`, one output per input; errors are `{"message": "..."}`.

Models named `instructor-*` embed: `inputs` are strings (or `[instruction, text]` pairs) and the outputs
are vectors (`fake_embedding` of the text). Every other model completes: `inputs` are prompts, the
answer is `Fake MosaicML completion of: <prompt>`, or, for `llama2*` models given a Llama-2-chat
prompt, `Fake Llama 2 answer to: <the last [INST] block's text>`; cut before the first `stop`
sequence, then at `max_new_tokens` tokens. Parameters: `max_new_tokens` (over `MAX_OUTPUT_TOKENS` is
MosaicML's 500 "Error: max output tokens is limited to ..."), `temperature` 0..2, `top_p` 0..1,
`top_k`, `stop`, `do_sample`, `use_cache`, `repetition_penalty`; an unknown parameter is a 400 (so OpenAI
names such as `n` or `max_tokens` leaking through the adapter fail the tests). No usage is reported.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tests.fake_upstream.faults import choose_fault, play
from tests.fake_upstream.openai import TOKEN_PATTERN, fake_embedding
from tests.fake_upstream.state import FakeState

PREFIX = "/mosaicml"
MAX_OUTPUT_TOKENS = 512
PARAMETERS = frozenset({"max_new_tokens", "temperature", "top_p", "top_k", "stop", "do_sample", "use_cache",
                        "repetition_penalty"})
_SYSTEM = re.compile(r"^<<SYS>> .*? <</SYS>> ", re.DOTALL)

Endpoint = Callable[[web.Request], Awaitable[web.StreamResponse]]


class MosaicError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def mosaic_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """MosaicML's error body (also the fault player's responder)."""
    return web.json_response({"message": message}, status=status, headers=headers)


def _number(value: Any, low: float, high: float) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high


def complete(model: str, inputs: list[Any], parameters: dict[str, Any]) -> list[str]:
    unknown = sorted(set(parameters) - PARAMETERS)
    if unknown:
        raise MosaicError(400, f"Error: unknown parameter '{unknown[0]}'")
    if not all(isinstance(i, str) and i for i in inputs):
        raise MosaicError(400, "Error: inputs must be a list of non-empty strings")
    if "temperature" in parameters and not _number(parameters["temperature"], 0, 2):
        raise MosaicError(400, "Error: temperature must be between 0 and 2")
    if "top_p" in parameters and not _number(parameters["top_p"], 0, 1):
        raise MosaicError(400, "Error: top_p must be between 0 and 1")
    max_new = parameters.get("max_new_tokens")
    if max_new is not None and (not isinstance(max_new, int) or max_new < 1):
        raise MosaicError(400, "Error: max_new_tokens must be a positive integer")
    if isinstance(max_new, int) and max_new > MAX_OUTPUT_TOKENS:
        raise MosaicError(500, f"Error: max output tokens is limited to {MAX_OUTPUT_TOKENS} tokens.")
    stops = parameters.get("stop") or []
    outputs = []
    for prompt in inputs:
        text = f"Fake MosaicML completion of: {prompt}"
        if model.startswith("llama2") and prompt.endswith(" [/INST]") and "[INST] " in prompt:
            block = prompt[prompt.rfind("[INST] ") + len("[INST] ") : -len(" [/INST]")]
            text = f"Fake Llama 2 answer to: {_SYSTEM.sub('', block)}"
        for stop in stops:
            if stop and stop in text:
                text = text[: text.index(stop)]
        tokens = list(TOKEN_PATTERN.finditer(text))
        if isinstance(max_new, int) and len(tokens) > max_new:
            text = text[: tokens[max_new - 1].end()]
        outputs.append(text)
    return outputs


def embed(inputs: list[Any]) -> list[list[float]]:
    vectors = []
    for item in inputs:
        if isinstance(item, list) and len(item) == 2 and all(isinstance(p, str) for p in item):
            item = item[1]  # [instruction, text]
        if not isinstance(item, str) or not item:
            raise MosaicError(400, "Error: inputs must be strings or [instruction, text] pairs")
        vectors.append(fake_embedding(item))
    return vectors


def predict_endpoint(state: FakeState) -> Endpoint:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        model = request.match_info["model"]
        try:
            try:
                body = await request.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise MosaicError(400, "Error: request body must be a JSON object")
            if fault := choose_fault(state.take_fault(), model):
                played = await play(fault, request, mosaic_error)
                if played is not None:
                    return played
            if request.headers.get("Authorization", "") not in state.credentials.mosaicml_keys:
                return mosaic_error(401, "Unauthorized")
            inputs = body.get("inputs")
            if not isinstance(inputs, list) or not inputs:
                raise MosaicError(400, "Error: 'inputs' must be a non-empty list")
            unknown = sorted(set(body) - {"inputs", "parameters"})
            if unknown:
                raise MosaicError(400, f"Error: unknown field '{unknown[0]}'")
            if model.startswith("instructor"):
                return web.json_response({"outputs": embed(inputs)})
            parameters = body.get("parameters") or {}
            if not isinstance(parameters, dict):
                raise MosaicError(400, "Error: 'parameters' must be an object")
            return web.json_response({"outputs": complete(model, inputs, parameters)})
        except MosaicError as exc:
            return mosaic_error(exc.status, exc.message)

    return endpoint


def routes(state: FakeState) -> list[web.RouteDef]:
    """This vendor's routes; the server adds them to its app."""
    return [web.post(f"{PREFIX}/{{model}}/v1/predict", predict_endpoint(state))]


__all__ = ["MAX_OUTPUT_TOKENS", "PREFIX", "complete", "mosaic_error", "routes"]

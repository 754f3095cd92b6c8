"""An MLflow scoring server (`mlflow models serve`), after MLflow's scoring protocol: `POST
<root>/invocations` with `Content-Type: application/json` and a body holding exactly one of
`inputs`, `instances`, `dataframe_split`, `dataframe_records` (plus an optional `params` dict);
the answer is `{"predictions": ...}`. No authentication.

Served here at `/mlflow/{model}/invocations` (the `model_server_url` is `<fake>/mlflow/<model>`);
the model name picks the model:

- `embed*`: an embeddings model, one `fake_embedding` vector per input;
- `dict-*`: a text model answering `{"predictions": {"candidates": [...]}}` (a one-key dict);
- anything else: a text model answering `["Fake completion of: <input>", ...]`, cut by the
  `params` `stop` and `max_tokens` like the OpenAI fake's answers.

Errors are MLflow's `{"error_code", "message", "stack_trace"}`: 415 for another content type, 400
BAD_REQUEST for a malformed body. Faults play as elsewhere (the magic name is the model's).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fake_upstream.faults import choose_fault, play
from tests.fake_upstream.openai import fake_embedding, shape_answer
from tests.fake_upstream.state import FakeState

INPUT_FIELDS = ("dataframe_split", "instances", "inputs", "dataframe_records")
STACK_TRACE = 'Traceback (most recent call last):\n  File "/opt/mlflow/pyfunc/scoring_server/__init__.py"'


def mlflow_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    code = "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR"
    body = {"error_code": code, "message": message, "stack_trace": STACK_TRACE}
    return web.json_response(body, status=status, headers=headers)


def routes(state: FakeState) -> list[web.RouteDef]:
    async def invocations(request: web.Request) -> web.StreamResponse:
        model = request.match_info["model"]
        if fault := choose_fault(state.take_fault(), model):
            played = await play(fault, request, mlflow_error)
            if played is not None:
                return played
        if request.content_type != "application/json":
            return mlflow_error(
                415, "This predictor only supports the following content types: ['text/csv', 'application/json']."
            )
        try:
            body = await request.json()
        except ValueError:
            return mlflow_error(400, "Failed to parse input as JSON.")
        fields = [name for name in INPUT_FIELDS if isinstance(body, dict) and name in body]
        if not isinstance(body, dict) or len(fields) != 1:
            given = sorted(body) if isinstance(body, dict) else []
            return mlflow_error(
                400,
                "Invalid input. The input must be a JSON dictionary with exactly one of the input fields "
                f"{set(INPUT_FIELDS)}. Received dictionary with input fields: {given}.",
            )
        params: Any = body.get("params", {})
        inputs = body[fields[0]]
        if not isinstance(params, dict) or not isinstance(inputs, list) or not inputs:
            return mlflow_error(400, "Invalid input: 'inputs' must be a non-empty list and 'params' a dict.")
        if model.startswith("embed"):
            return web.json_response({"predictions": [fake_embedding(str(text)) for text in inputs]})
        texts = [shape_answer(f"Fake completion of: {text}", params)[0] for text in inputs]
        if model.startswith("dict-"):
            return web.json_response({"predictions": {"candidates": texts}})
        return web.json_response({"predictions": texts})

    return [web.post("/mlflow/{model}/invocations", invocations)]


__all__ = ["routes"]

"""Databricks Model Serving's wire format, after Databricks' REST reference (`POST
/serving-endpoints/{name}/invocations`) and the Foundation Model APIs' request/response shapes.

`Authorization: Bearer <token>` is required: none → 401 `{"error_code": "401", "message":
"Credential was not sent or was of an unsupported type for this API."}`; a wrong one → 403
`{"error_code": "PERMISSION_DENIED", "message": "Invalid access token."}`. The endpoint's task
follows the body: `messages` → chat, `prompt` → completions, `input` → embeddings (the OpenAI
fake's answers, so texts and token counts are the same), with `model` set to the endpoint's name.
Errors are `{"error_code", "message"}`: BAD_REQUEST (400), RESOURCE_DOES_NOT_EXIST (404) for the
endpoint `missing-endpoint`, REQUEST_LIMIT_EXCEEDED (429), INTERNAL_ERROR (5xx). Endpoints named
`custom-*` are custom models that answer without `usage`. Streams are OpenAI's SSE chunks.
"""

from __future__ import annotations

import json

from aiohttp import web

from tests.fake_upstream import openai as openai_fake
from tests.fake_upstream.faults import choose_fault, play
from tests.fake_upstream.openai import VendorError
from tests.fake_upstream.state import FakeState

ERROR_CODES = {400: "BAD_REQUEST", 401: "401", 403: "PERMISSION_DENIED", 404: "RESOURCE_DOES_NOT_EXIST",
               429: "REQUEST_LIMIT_EXCEEDED"}


def databricks_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    code = ERROR_CODES.get(status, "INTERNAL_ERROR" if status >= 500 else "BAD_REQUEST")
    return web.json_response({"error_code": code, "message": message}, status=status, headers=headers)


def routes(state: FakeState) -> list[web.RouteDef]:
    async def invocations(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        try:
            body = await openai_fake._json_body(request)
            if fault := choose_fault(state.take_fault(), name):
                played = await play(fault, request, databricks_error)
                if played is not None:
                    return played
            auth = request.headers.get("Authorization", "")
            token = auth[7:].strip() if auth.startswith("Bearer ") else ""
            if not token:
                return databricks_error(401, "Credential was not sent or was of an unsupported type for this API.")
            if token not in state.credentials.databricks_tokens:
                return databricks_error(403, "Invalid access token.")
            if name == "missing-endpoint":
                return databricks_error(404, f"Endpoint with name '{name}' does not exist.")
            if "messages" in body:
                answer = openai_fake.chat_answer
            elif "prompt" in body:
                answer = openai_fake.completions_answer
            elif "input" in body:
                answer = openai_fake.embeddings_answer
            else:
                raise VendorError(400, "Invalid request: the body needs 'messages', 'prompt' or 'input'.")
            response = await answer(request, body, name)
            if name.startswith("custom-") and isinstance(response, web.Response):
                assert isinstance(response.body, bytes)
                data = json.loads(response.body)
                data.pop("usage", None)
                return web.json_response(data)
            return response
        except VendorError as exc:
            return databricks_error(exc.status, exc.message)

    return [web.post("/serving-endpoints/{name}/invocations", invocations)]


__all__ = ["routes"]

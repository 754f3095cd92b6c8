"""Amazon Bedrock Runtime's wire format (and STS AssumeRole), after AWS's published API references.

`POST /model/{modelId}/invoke` and `/model/{modelId}/invoke-with-response-stream`, authenticated
like AWS does it: a SigV4 `Authorization` header, verified for real by recomputing the signature
with botocore from the known test secret over the request as received (raw path, signed headers,
body), scoped to the fake's region and the service `bedrock`; temporary keys need their
`X-Amz-Security-Token`. A Bedrock API key (`Authorization: Bearer ...`) is accepted too. Errors are
`{"message": ...}` with the type in `x-amzn-ErrorType` (ValidationException, AccessDeniedException,
UnrecognizedClientException, InvalidSignatureException, ThrottlingException, ...).

The body is checked per model family, as Bedrock's model parameter references define it (extra keys
are "extraneous", as Bedrock says): Anthropic (`anthropic_version: bedrock-2023-05-31`, Messages API,
no `model`), Cohere Command R (`message`, `chat_history`, `preamble`...), Cohere Embed (`texts`,
`input_type`), Titan Text (`inputText`, `textGenerationConfig`), Titan Embeddings (one `inputText`),
Meta Llama 3/4 (`prompt`, `max_gen_len`...; a chat-template prompt must be well formed).

Answers are deterministic, as the other fakes': chat answers `Fake answer to: <last user message>`
(for Titan and Llama read back out of the conversation template), completions `Fake completion of:
<prompt>`, cut at stop sequences and the token limit. Every answer carries Bedrock's
`X-Amzn-Bedrock-Input-Token-Count` / `-Output-Token-Count` headers. Streams are the AWS event stream
(binary frames with CRCs, built by `event_frame`), one `chunk` event per word with the family's
stream JSON base64-encoded, the last carrying `amazon-bedrock-invocationMetrics`; stream faults:
`stream-error` sends a modelStreamErrorException frame after the first chunk.

STS: `POST /aws-sts/` (`AWS_ENDPOINT_URL_STS=<fake>/aws-sts`), Action=AssumeRole, signed with a
known key for the service `sts`; roles in `credentials.aws_roles` are granted, and the temporary key
it issues is accepted by the Bedrock routes (with its session token) from then on.

Faults: queued, or a magic model name after the family prefix (`anthropic.fault-429-3`).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hmac
import itertools
import json
import re
import secrets
import struct
import zlib
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote

from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from tests.fake_upstream import anthropic as anthropic_fake
from tests.fake_upstream.faults import STREAM_FAULT, choose_fault, play
from tests.fake_upstream.openai import TOKEN_PATTERN, count_tokens, fake_embedding
from tests.fake_upstream.state import FakeState

REGION = "us-east-1"
SERVICE = "bedrock"
ANTHROPIC_VERSION = "bedrock-2023-05-31"
MAX_CLOCK_SKEW = dt.timedelta(minutes=5)
METRICS_KEY = "amazon-bedrock-invocationMetrics"
GEO_PREFIXES = {"us", "eu", "apac", "global", "us-gov", "jp", "au", "ca", "uk"}
ERROR_TYPES = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    408: "ModelTimeoutException",
    424: "ModelErrorException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}
_ids = itertools.count(1)
_AUTH = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,"
    r"\s*SignedHeaders=(?P<signed>[a-z0-9;-]+),\s*Signature=(?P<signature>[0-9a-f]{64})$"
)


class VendorError(Exception):
    def __init__(self, status: int, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.kind = kind or _error_kind(status)


def _error_kind(status: int) -> str:
    return ERROR_TYPES.get(status, "InternalServerException" if status >= 500 else "ValidationException")


def _request_id() -> str:
    return f"fake-{next(_ids):08d}-0000-4000-8000-000000000000"


def bedrock_error(
    status: int, message: str, headers: dict[str, str] | None = None, *, kind: str | None = None
) -> web.Response:
    """An error answer in Bedrock's shape (also the fault player's responder)."""
    error_kind = kind or _error_kind(status)
    if status == 429 and kind is None:
        message = "Too many requests, please wait before trying again."
    return web.json_response(
        {"message": message},
        status=status,
        headers={
            "x-amzn-ErrorType": f"{error_kind}:http://internal.amazon.com/coral/com.amazon.bedrock/",
            "x-amzn-RequestId": _request_id(),
            **(headers or {}),
        },
    )


def _malformed(detail: str) -> VendorError:
    return VendorError(400, f"Malformed input request: {detail}, please reformat your input and try again.")


# ---------------------------------------------------------------- the AWS event stream encoder


def event_frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One event stream message: prelude (total and headers lengths, CRC), string headers, payload,
    message CRC (over everything before it)."""
    encoded = b"".join(
        struct.pack("B", len(name.encode())) + name.encode() + b"\x07" + struct.pack(">H", len(value.encode()))
        + value.encode()
        for name, value in headers.items()
    )
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    prelude += struct.pack(">I", zlib.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message) & 0xFFFFFFFF)


def chunk_frame(event: dict[str, Any]) -> bytes:
    """A `chunk` event carrying one stream JSON object, base64-encoded as Bedrock sends it."""
    raw = json.dumps(event).encode()
    # Bedrock pads each chunk with a `p` field of varying length (it hides the text's length).
    padding = "abcdefghijklmnopqrstuvwxyzABCDEF"[: len(raw) % 32]
    payload = json.dumps({"bytes": base64.b64encode(raw).decode(), "p": padding})
    return event_frame(
        {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}, payload.encode()
    )


def exception_frame(kind: str, message: str) -> bytes:
    payload = json.dumps({"message": message, "originalStatusCode": 500, "originalMessage": message}).encode()
    return event_frame(
        {":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"}, payload
    )


# ---------------------------------------------------------------- SigV4, verified with botocore


def verify_signature(request: web.Request, body: bytes, state: FakeState, *, service: str) -> str:
    """The access key id that signed `request`; raises VendorError (403) as AWS answers otherwise."""
    authorization = request.headers.get("Authorization", "")
    if not authorization:
        raise VendorError(403, "Missing Authentication Token", "MissingAuthenticationTokenException")
    match = _AUTH.match(authorization)
    if match is None:
        raise VendorError(403, "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature'.",
                          "IncompleteSignatureException")
    key_id = match["key"]
    known = state.credentials.aws_keys.get(key_id)
    token = request.headers.get("X-Amz-Security-Token")
    invalid_token = VendorError(403, "The security token included in the request is invalid.",
                                "UnrecognizedClientException")
    if known is None:
        raise invalid_token
    secret, expected_token = known
    if expected_token is not None and (token is None or not hmac.compare_digest(token, expected_token)):
        raise invalid_token
    if expected_token is None and token is not None:
        raise invalid_token
    if match["service"] != service:
        raise VendorError(403, f"Credential should be scoped to correct service: '{service}'.",
                          "InvalidSignatureException")
    if match["region"] != REGION:
        raise VendorError(403, "Credential should be scoped to a valid region.", "InvalidSignatureException")
    amz_date = request.headers.get("X-Amz-Date", "")
    try:
        signed_at = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise VendorError(403, "Date must be in ISO-8601 'basic format'.", "IncompleteSignatureException") from None
    if abs(dt.datetime.now(dt.UTC) - signed_at) > MAX_CLOCK_SKEW or match["date"] != amz_date[:8]:
        raise VendorError(403, "Signature expired or not yet current.", "InvalidSignatureException")
    names = match["signed"].split(";")
    if "host" not in names or "x-amz-date" not in names or any(name not in request.headers for name in names):
        raise VendorError(403, "Signed headers must include host and x-amz-date, and be present.",
                          "InvalidSignatureException")
    # What AWS does: rebuild the canonical request from what arrived (raw path, signed headers, body).
    received = AWSRequest(
        method=request.method,
        url=f"http://{request.headers['Host']}{request.raw_path}",
        headers={name: request.headers[name] for name in names},
        data=body,
    )
    received.context["timestamp"] = amz_date
    signer = SigV4Auth(BotoCredentials(key_id, secret, expected_token), match["service"], match["region"])
    expected = signer.signature(signer.string_to_sign(received, signer.canonical_request(received)), received)
    if not hmac.compare_digest(expected, match["signature"]):
        raise VendorError(
            403,
            "The request signature we calculated does not match the signature you provided. Check your AWS "
            "Secret Access Key and signing method. Consult the service documentation for details.",
            "InvalidSignatureException",
        )
    return key_id


def check_auth(request: web.Request, body: bytes, state: FakeState) -> None:
    """SigV4 for `bedrock`, or a Bedrock API key as a bearer token."""
    authorization = request.headers.get("Authorization", "")
    if authorization.startswith("Bearer "):
        if authorization.removeprefix("Bearer ") not in state.credentials.bedrock_api_keys:
            raise VendorError(403, "Authentication failed: Please make sure your API Key is valid.",
                              "UnrecognizedClientException")
        return
    verify_signature(request, body, state, service=SERVICE)


# ---------------------------------------------------------------- shared checks


def _extraneous(body: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise _malformed(f"#: extraneous key [{extra[0]}] is not permitted")


def _number(body: dict[str, Any], name: str, low: float, high: float, *, integer: bool = False) -> None:
    value = body.get(name)
    if value is None:
        return
    kind = int if integer else (int, float)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise _malformed(f"#/{name}: expected type: {'Integer' if integer else 'Number'}")
    if not low <= value <= high:
        raise _malformed(f"#/{name}: {value} is not in range {low:g}..{high:g}")


def _string_list(body: dict[str, Any], name: str, limit: int) -> list[str]:
    value = body.get(name) or []
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value) or len(value) > limit:
        raise _malformed(f"#/{name}: expected an array of at most {limit} strings")
    return value


def cut(text: str, *, stops: list[str], max_tokens: int | None) -> tuple[str, str]:
    """`text` cut at the first stop sequence, then at `max_tokens` tokens: (text, "stop"|"stopseq"|"length")."""
    reason = "stop"
    for stop in stops:
        if stop and stop in text:
            text, reason = text[: text.index(stop)], "stopseq"
    tokens = list(TOKEN_PATTERN.finditer(text))
    if max_tokens is not None and len(tokens) > max_tokens:
        return text[: tokens[max_tokens - 1].end()], "length"
    return text, reason


def words(text: str) -> list[str]:
    return re.findall(r"\s*\S+\s*|\s+", text) or [""]


# ---------------------------------------------------------------- families


class Answer:
    """What a family answers: the plain body, or the stream events; and the billed counts."""

    def __init__(self, body: dict[str, Any], events: list[dict[str, Any]], input_tokens: int, output_tokens: int):
        self.body, self.events = body, events
        self.input_tokens, self.output_tokens = input_tokens, output_tokens


def base_model(model_id: str) -> str:
    name = model_id.rsplit("/", 1)[-1]
    head, _, rest = name.partition(".")
    return rest if head in GEO_PREFIXES and "." in rest else name


def anthropic_answer(body: dict[str, Any], model: str) -> Answer:
    if body.get("anthropic_version") is None:
        raise _malformed("#: required key [anthropic_version] not found")
    if body["anthropic_version"] != ANTHROPIC_VERSION:
        raise VendorError(400, f"invalid anthropic_version: {body['anthropic_version']}")
    for name in ("model", "stream"):
        if name in body:
            raise _malformed(f"#: extraneous key [{name}] is not permitted")
    messages_request = {k: v for k, v in body.items() if k != "anthropic_version"} | {"model": model}
    try:
        turns = anthropic_fake.validate(messages_request)
    except anthropic_fake.VendorError as exc:
        raise VendorError(exc.status, exc.message) from None
    last_user = next(t["content"] for t in reversed(turns) if t["role"] == "user")
    text, stop_reason, stop_sequence = anthropic_fake.shape_answer(f"Fake answer to: {last_user}", messages_request)
    system = body.get("system") if isinstance(body.get("system"), str) else ""
    input_tokens = count_tokens(system or "") + sum(count_tokens(t["content"]) for t in turns)
    output_tokens = count_tokens(text)
    ident = f"msg_bdrk_fake{next(_ids):06d}"
    answer = {
        "id": ident, "type": "message", "role": "assistant", "model": "claude-fake-20240101",
        "content": [{"type": "text", "text": text}], "stop_reason": stop_reason, "stop_sequence": stop_sequence,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {**answer, "content": [], "stop_reason": None,
                                              "usage": {"input_tokens": input_tokens, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        *({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}} for w in words(text)),
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
         "usage": {"output_tokens": output_tokens}},
        {"type": "message_stop"},
    ]
    return Answer(answer, events, input_tokens, output_tokens)


COHERE_CHAT_KEYS = {
    "message", "chat_history", "documents", "search_queries_only", "preamble", "max_tokens", "temperature", "p",
    "k", "prompt_truncation", "frequency_penalty", "presence_penalty", "seed", "return_prompt", "tools",
    "tool_results", "stop_sequences", "raw_prompting",
}


def cohere_chat_answer(body: dict[str, Any]) -> Answer:
    _extraneous(body, COHERE_CHAT_KEYS)
    message = body.get("message")
    if not isinstance(message, str):
        raise _malformed("#: required key [message] not found")
    history = body.get("chat_history") or []
    if not isinstance(history, list) or not all(
        isinstance(t, dict) and t.get("role") in ("USER", "CHATBOT", "SYSTEM") and isinstance(t.get("message"), str)
        for t in history
    ):
        raise _malformed("#/chat_history: each turn needs role USER or CHATBOT and a message string")
    if "preamble" in body and not isinstance(body["preamble"], str):
        raise _malformed("#/preamble: expected type: String")
    _number(body, "temperature", 0, 1)
    _number(body, "p", 0.01, 0.99)
    _number(body, "frequency_penalty", 0, 1)
    _number(body, "presence_penalty", 0, 1)
    _number(body, "max_tokens", 1, 4096, integer=True)
    stops = _string_list(body, "stop_sequences", 4)
    text, reason = cut(f"Fake answer to: {message}", stops=stops, max_tokens=body.get("max_tokens"))
    finish = "MAX_TOKENS" if reason == "length" else "COMPLETE"
    input_tokens = count_tokens(body.get("preamble") or "") + sum(count_tokens(t["message"]) for t in history)
    input_tokens += count_tokens(message)
    generation = f"fake-generation-{next(_ids)}"
    answer = {
        "response_id": f"fake-response-{next(_ids)}", "text": text, "generation_id": generation,
        "chat_history": [*history, {"role": "USER", "message": message}, {"role": "CHATBOT", "message": text}],
        "finish_reason": finish,
    }
    events: list[dict[str, Any]] = [
        {"is_finished": False, "event_type": "stream-start", "generation_id": generation},
        *({"is_finished": False, "event_type": "text-generation", "text": w} for w in words(text)),
        {"is_finished": True, "event_type": "stream-end", "response": answer, "finish_reason": finish},
    ]
    return Answer(answer, events, input_tokens, count_tokens(text))


COHERE_INPUT_TYPES = ("search_document", "search_query", "classification", "clustering")


def cohere_embed_answer(body: dict[str, Any]) -> Answer:
    _extraneous(body, {"texts", "input_type", "truncate", "embedding_types", "images"})
    texts = body.get("texts")
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts) or not 1 <= len(texts) <= 96:
        raise _malformed("#/texts: expected an array of 1 to 96 strings")
    if body.get("input_type") not in COHERE_INPUT_TYPES:
        raise _malformed(f"#/input_type: must be one of {', '.join(COHERE_INPUT_TYPES)}")
    answer = {"embeddings": [fake_embedding(t) for t in texts], "id": f"fake-embed-{next(_ids)}",
              "response_type": "embeddings_floats", "texts": texts}
    return Answer(answer, [], sum(count_tokens(t) for t in texts), 0)


TITAN_CONFIG_KEYS = {"temperature", "topP", "maxTokenCount", "stopSequences"}


def titan_text_answer(body: dict[str, Any]) -> Answer:
    _extraneous(body, {"inputText", "textGenerationConfig"})
    prompt = body.get("inputText")
    if not isinstance(prompt, str) or not prompt:
        raise _malformed("#: required key [inputText] not found")
    config = body.get("textGenerationConfig") or {}
    if not isinstance(config, dict):
        raise _malformed("#/textGenerationConfig: expected type: JSONObject")
    _extraneous(config, TITAN_CONFIG_KEYS)
    _number(config, "temperature", 0, 1)
    _number(config, "topP", 0, 1)
    _number(config, "maxTokenCount", 1, 8192, integer=True)
    stops = _string_list(config, "stopSequences", 4)
    if prompt.endswith("\nBot:") or prompt.startswith("User: "):
        user_lines = [line for line in prompt.splitlines() if line.startswith("User: ")]
        if not user_lines or not prompt.endswith("Bot:"):
            raise VendorError(400, "fake: a Titan conversation needs 'User: ' lines and must end with 'Bot:'")
        raw = f"Fake answer to: {user_lines[-1].removeprefix('User: ')}"
    else:
        raw = f"Fake completion of: {prompt}"
    text, reason = cut(raw, stops=stops, max_tokens=config.get("maxTokenCount"))
    completion = {"stop": "FINISH", "stopseq": "STOP_CRITERIA_MET", "length": "LENGTH"}[reason]
    input_tokens, output_tokens = count_tokens(prompt), count_tokens(text)
    answer = {"inputTextTokenCount": input_tokens,
              "results": [{"tokenCount": output_tokens, "outputText": text, "completionReason": completion}]}
    pieces = words(text)
    events: list[dict[str, Any]] = []
    sent = 0
    for i, piece in enumerate(pieces):
        sent += count_tokens(piece)
        events.append({"outputText": piece, "index": 0, "totalOutputTextTokenCount": sent,
                       "completionReason": completion if i == len(pieces) - 1 else None,
                       "inputTextTokenCount": input_tokens if i == 0 else None})
    return Answer(answer, events, input_tokens, output_tokens)


def titan_embed_answer(body: dict[str, Any], model: str) -> Answer:
    v2 = "embed-text-v2" in model
    _extraneous(body, {"inputText", "dimensions", "normalize", "embeddingTypes"} if v2 else {"inputText"})
    text = body.get("inputText")
    if not isinstance(text, str):
        found = "JSONArray" if isinstance(text, list) else type(text).__name__
        raise _malformed(f"#/inputText: expected type: String, found: {found}")
    if v2 and body.get("dimensions") not in (None, 256, 512, 1024):
        raise _malformed("#/dimensions: must be 256, 512 or 1024")
    vector = fake_embedding(text)
    answer: dict[str, Any] = {"embedding": vector, "inputTextTokenCount": count_tokens(text)}
    if v2:
        answer["embeddingsByType"] = {"float": vector}
    return Answer(answer, [], count_tokens(text), 0)


LLAMA_TEMPLATES = {
    3: ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    4: ("<|header_start|>", "<|header_end|>", "<|eot|>"),
}


def llama_last_user(prompt: str, version: int) -> str:
    """The last user turn of a chat-template prompt; VendorError if the template is malformed."""
    open_h, close_h, end = LLAMA_TEMPLATES[version]
    pattern = re.compile(re.escape(open_h) + r"(system|user|assistant)" + re.escape(close_h) + r"\n\n(.*?)"
                         + re.escape(end), re.DOTALL)
    tail = f"{open_h}assistant{close_h}\n\n"
    body = prompt.removeprefix("<|begin_of_text|>")
    turns = list(pattern.finditer(body))
    if not prompt.endswith(tail) or not turns or "".join(m.group(0) for m in turns) + tail != body:
        raise VendorError(400, f"fake: malformed Llama {version} chat template")
    users = [m.group(2) for m in turns if m.group(1) == "user"]
    if not users:
        raise VendorError(400, "fake: the chat template has no user turn")
    return users[-1]


def llama_answer(body: dict[str, Any], model: str) -> Answer:
    _extraneous(body, {"prompt", "temperature", "top_p", "max_gen_len", "images"})
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise _malformed("#: required key [prompt] not found")
    _number(body, "temperature", 0, 1)
    _number(body, "top_p", 0, 1)
    _number(body, "max_gen_len", 1, 2048, integer=True)
    version = 4 if base_model(model).startswith("meta.llama4") else 3
    if prompt.startswith("<|begin_of_text|>"):
        raw = f"Fake answer to: {llama_last_user(prompt, version)}"
    else:
        raw = f"Fake completion of: {prompt}"
    text, reason = cut(raw, stops=[], max_tokens=body.get("max_gen_len"))
    stop_reason = "length" if reason == "length" else "stop"
    input_tokens, output_tokens = count_tokens(prompt), count_tokens(text)
    answer = {"generation": text, "prompt_token_count": input_tokens, "generation_token_count": output_tokens,
              "stop_reason": stop_reason}
    pieces = words(text)
    events: list[dict[str, Any]] = []
    sent = 0
    for i, piece in enumerate(pieces):
        sent += count_tokens(piece)
        events.append({"generation": piece, "prompt_token_count": input_tokens if i == 0 else None,
                       "generation_token_count": sent, "stop_reason": stop_reason if i == len(pieces) - 1 else None})
    return Answer(answer, events, input_tokens, output_tokens)


def family_answer(model: str) -> Callable[[dict[str, Any]], Answer] | None:
    """The family that answers `model`, or None for an identifier Bedrock would call invalid."""
    name = base_model(model)
    if name.startswith("anthropic."):
        return lambda body: anthropic_answer(body, model)
    if name.startswith("cohere.command-r"):
        return cohere_chat_answer
    if name.startswith("cohere.embed"):
        return cohere_embed_answer
    if name.startswith(("amazon.titan-text", "amazon.titan-tg1")):
        return titan_text_answer
    if name.startswith("amazon.titan-embed"):
        return lambda body: titan_embed_answer(body, name)
    if name.startswith(("meta.llama3", "meta.llama4")):
        return lambda body: llama_answer(body, model)
    return None


# ---------------------------------------------------------------- answering


def _count_headers(answer: Answer) -> dict[str, str]:
    return {
        "X-Amzn-Bedrock-Input-Token-Count": str(answer.input_tokens),
        "X-Amzn-Bedrock-Output-Token-Count": str(answer.output_tokens),
        "X-Amzn-Bedrock-Invocation-Latency": "42",
        "x-amzn-RequestId": _request_id(),
    }


async def stream_events(request: web.Request, answer: Answer) -> web.StreamResponse:
    """The answer as an AWS event stream: one `chunk` per event, metrics on the last; faults played."""
    if not answer.events:
        raise VendorError(400, "The model does not support streaming.")
    fault = request.get(STREAM_FAULT)
    delay = fault.seconds if fault is not None and fault.kind == "stream-slow" else 0.0
    response = web.StreamResponse(headers={
        "Content-Type": "application/vnd.amazon.eventstream",
        "X-Amzn-Bedrock-Content-Type": "application/json",
        "x-amzn-RequestId": _request_id(),
    })
    await response.prepare(request)
    events = [dict(event) for event in answer.events]
    events[-1][METRICS_KEY] = {"inputTokenCount": answer.input_tokens, "outputTokenCount": answer.output_tokens,
                               "invocationLatency": 42, "firstByteLatency": 7}
    for index, event in enumerate(events):
        if delay:
            await asyncio.sleep(delay)
        await response.write(chunk_frame(event))
        if index == 1 and fault is not None and fault.kind == "stream-error":
            await response.write(exception_frame(
                "modelStreamErrorException", "The model failed while streaming (fake stream-error)."))
            await response.write_eof()
            return response
        if index == 1 and fault is not None and fault.kind == "stream-cut":
            assert request.transport is not None
            request.transport.close()
            return response
    await response.write_eof()
    return response


def routes(state: FakeState) -> list[web.RouteDef]:
    """This vendor's routes (Bedrock Runtime and STS); the server adds them to its app."""

    async def invoke(request: web.Request, *, stream: bool) -> web.StreamResponse:
        model = unquote(request.match_info["model_id"])
        try:
            raw = await request.read()
            family = family_answer(model)
            magic = base_model(model).partition(".")[2]
            # A stream fault on a plain call is only remembered on the request, and so plays no part.
            if (fault := choose_fault(state.take_fault(), magic)) and (played := await play(
                    fault, request, bedrock_error)) is not None:
                return played
            check_auth(request, raw, state)
            if family is None:
                raise VendorError(400, "The provided model identifier is invalid.")
            if request.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
                raise VendorError(400, "The provided Content-Type is not supported.")
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise _malformed("#: expected type: JSONObject")
            answer = family(body)
            if stream:
                return await stream_events(request, answer)
            return web.json_response(answer.body, headers=_count_headers(answer))
        except VendorError as exc:
            return bedrock_error(exc.status, exc.message, kind=exc.kind)

    async def invoke_plain(request: web.Request) -> web.StreamResponse:
        return await invoke(request, stream=False)

    async def invoke_stream(request: web.Request) -> web.StreamResponse:
        return await invoke(request, stream=True)

    async def assume_role(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            verify_signature(request, raw, state, service="sts")
        except VendorError as exc:
            code = {"UnrecognizedClientException": "InvalidClientTokenId",
                    "InvalidSignatureException": "SignatureDoesNotMatch"}.get(exc.kind, exc.kind)
            return sts_error(exc.status, code, exc.message)
        form = {key: values[0] for key, values in parse_qs(raw.decode()).items()}
        if form.get("Action") != "AssumeRole":
            return sts_error(400, "InvalidAction", f"Could not find operation {form.get('Action')}.")
        role = form.get("RoleArn", "")
        if role not in state.credentials.aws_roles:
            return sts_error(403, "AccessDenied", "User: arn:aws:iam::123456789012:user/fake-gateway is not "
                             f"authorized to perform: sts:AssumeRole on resource: {role}")
        seconds = int(form.get("DurationSeconds") or 3600)
        if not 900 <= seconds <= 43200:
            return sts_error(400, "ValidationError", "DurationSeconds must be between 900 and 43200.")
        key_id = "ASIA" + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
        secret_key, token = secrets.token_urlsafe(30)[:40], "FwoGZXIvYXdzE" + secrets.token_urlsafe(48)
        state.credentials.aws_keys[key_id] = (secret_key, token)
        expires = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
        session = form.get("RoleSessionName", "")
        xml = (
            '<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>'
            f"<Credentials><AccessKeyId>{key_id}</AccessKeyId><SecretAccessKey>{secret_key}</SecretAccessKey>"
            f"<SessionToken>{token}</SessionToken><Expiration>{expires}</Expiration></Credentials>"
            f"<AssumedRoleUser><AssumedRoleId>AROAFAKE:{session}</AssumedRoleId>"
            f"<Arn>{role.replace(':iam::', ':sts::').replace(':role/', ':assumed-role/')}/{session}</Arn>"
            "</AssumedRoleUser></AssumeRoleResult>"
            f"<ResponseMetadata><RequestId>{_request_id()}</RequestId></ResponseMetadata></AssumeRoleResponse>"
        )
        return web.Response(text=xml, content_type="text/xml")

    model_path = r"/model/{model_id:.+}"
    return [
        web.post(f"{model_path}/invoke-with-response-stream", invoke_stream),
        web.post(f"{model_path}/invoke", invoke_plain),
        web.post("/aws-sts/", assume_role),
        web.post("/aws-sts", assume_role),
    ]


def sts_error(status: int, code: str, message: str) -> web.Response:
    xml = (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
        f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>{_request_id()}</RequestId></ErrorResponse>"
    )
    return web.Response(status=status, text=xml, content_type="text/xml")


__all__ = ["bedrock_error", "chunk_frame", "event_frame", "exception_frame", "routes", "verify_signature"]

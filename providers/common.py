"""Helpers shared by the HTTP vendor adapters: JSON bodies, header look-ups, safe vendor messages, the
mapping of vendor error answers to GatewayErrors, and small request/answer helpers.

Pure functions over plain data; no I/O.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from providers.base import (
    ChatMessage,
    ChatRequest,
    CommonParams,
    CompletionsRequest,
    GatewayError,
    InvalidRequest,
    Secrets,
    UpstreamError,
    UpstreamResponse,
    redact,
)

# Vendors' messages reach API callers; anything longer is noise (or a stack trace).
MAX_VENDOR_MESSAGE = 500
# Vendor statuses that mean the caller's request was refused (400 to the caller, not 502).
BAD_REQUEST_STATUSES = frozenset({400, 404, 413, 422})
AUTH_FAILED_TEXT = "The upstream provider rejected the gateway's credentials for this route."

# Masked keys as vendors echo them ("sk-abc1***************wxyz", "sk-proj-****...6F0A"): matched
# whole, before `redact()` swaps the known prefix/suffix and would leave the characters in between.
_MASKED_KEY = re.compile(r"\b(?:sk|pk|rk|key|gw)[-_][A-Za-z0-9_\-]*\*+[A-Za-z0-9_\-*]*")
# OpenAI names the organization in rate-limit messages; callers have no business knowing it.
_ORG_ID = re.compile(r"\borg-[A-Za-z0-9]{6,}\b")


def load_json(body: bytes) -> Any:
    """Decode a JSON body; raises `orjson.JSONDecodeError` (a ValueError) on anything else."""
    return orjson.loads(body)


def json_object(body: bytes) -> dict[str, Any] | None:
    """A body that is a JSON object, decoded; None for anything else (no JSON, a list, a string...)."""
    try:
        data = load_json(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header look-up that works on plain dicts as well as httpx.Headers."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None


def retry_after_seconds(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds the vendor asks us to wait, from `retry-after-ms` or `Retry-After` (seconds or date)."""
    millis = header(headers, "retry-after-ms")
    if millis is not None:
        try:
            return max(float(millis) / 1000.0, 0.0)
        except ValueError:
            pass
    value = header(headers, "retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def vendor_error_message(body: bytes) -> str | None:
    """The human message in a vendor error body, whichever common shape it has, else None.

    Shapes seen: OpenAI/Azure `{"error": {"message": ...}}`, llama.cpp/Ollama `{"error": "..."}`,
    vLLM `{"message": ...}`, FastAPI-style `{"detail": ...}`.
    """
    data = json_object(body)
    if data is None:
        return None
    error = data.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    if isinstance(error, str):
        return error
    for key in ("message", "detail"):
        if isinstance(data.get(key), str):
            return str(data[key])
    return None


def validation_errors_text(items: Any) -> str | None:
    """FastAPI/pydantic validation errors (`[{"loc": [...], "msg": ...}]`) as `field: problem` pairs
    joined by "; " (the `body` part of a location left out); None if there are none."""
    if not isinstance(items, list):
        return None
    parts = []
    for item in items:
        if isinstance(item, Mapping):
            where = ".".join(str(p) for p in item.get("loc") or [] if p != "body")
            parts.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
    return "; ".join(parts) or None


def safe_vendor_message(text: str | None, secrets: Secrets, *, limit: int = MAX_VENDOR_MESSAGE) -> str:
    """A vendor message fit to show a caller: credentials and org ids removed, length capped."""
    if not text:
        return ""
    text = _MASKED_KEY.sub("[REDACTED]", text)
    text = _ORG_ID.sub("[REDACTED]", text)
    # Keys pasted with a trailing newline must still match what the vendor echoes.
    text = redact(text, Secrets({name: value.strip() for name, value in secrets.items()}))
    text = redact(text, secrets)
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 3].rstrip() + "..."
    return text


# ---------------------------------------------------------------- vendor errors → GatewayError


def with_detail(text: str, message: str) -> str:
    """`text: message`, or `text.` when there is no message."""
    return text + (f": {message}" if message else ".")


def auth_failed_error(text: str = AUTH_FAILED_TEXT) -> UpstreamError:
    """502 UPSTREAM_AUTH_FAILED with a fixed text: nothing of the vendor's answer (which may echo the key)."""
    return UpstreamError(text, code="UPSTREAM_AUTH_FAILED")


def bad_request_error(status: int, message: str) -> InvalidRequest:
    """400 UPSTREAM_BAD_REQUEST: the vendor refused the caller's request, with its (redacted) message."""
    return InvalidRequest(
        f"The upstream provider rejected the request: {message or f'HTTP {status}'}",
        code="UPSTREAM_BAD_REQUEST",
    )


def rate_limited_error(message: str, retry_after: float | None) -> UpstreamError:
    """502 UPSTREAM_RATE_LIMITED, with the wait the vendor asked for."""
    return UpstreamError(
        with_detail("The upstream provider's rate limit was reached", message),
        code="UPSTREAM_RATE_LIMITED",
        retry_after=retry_after,
    )


def upstream_error(status: int, message: str, *, retry_after: float | None = None) -> UpstreamError:
    """502 UPSTREAM_ERROR naming the vendor's status."""
    return UpstreamError(
        with_detail(f"The upstream provider answered with HTTP {status}", message),
        code="UPSTREAM_ERROR",
        retry_after=retry_after,
    )


def map_vendor_error(
    response: UpstreamResponse,
    secrets: Secrets,
    *,
    message: str | None = None,
    extract: Callable[[bytes], str | None] = vendor_error_message,
    bad_request_statuses: frozenset[int] = BAD_REQUEST_STATUSES,
    retry_after_on_error: bool = False,
) -> GatewayError:
    """A vendor error answer → the GatewayError callers see (never with a credential in it).

    401/403 → UPSTREAM_AUTH_FAILED with a fixed text; `bad_request_statuses` → 400
    UPSTREAM_BAD_REQUEST; 429 → UPSTREAM_RATE_LIMITED with the vendor's Retry-After; anything else →
    UPSTREAM_ERROR, with the vendor's Retry-After too if `retry_after_on_error` (for vendors whose
    overload answers, 503 or Anthropic's 529, carry one).

    The message shown is `message` when given (already redacted by the caller), else what `extract`
    finds in the body, redacted with `safe_vendor_message`. Vendors with special cases handle them
    first and hand the rest to this function.
    """
    status = response.status
    if status in (401, 403):
        return auth_failed_error()
    if message is None:
        message = safe_vendor_message(extract(response.body), secrets)
    if status in bad_request_statuses:
        return bad_request_error(status, message)
    if status == 429:
        return rate_limited_error(message, retry_after_seconds(response.headers))
    return upstream_error(
        status, message, retry_after=retry_after_seconds(response.headers) if retry_after_on_error else None
    )


def mid_stream_error(text: str, secrets: Secrets) -> UpstreamError:
    """The vendor failing after its stream started, with its (redacted) message."""
    return UpstreamError(f"The upstream provider failed mid-stream: {safe_vendor_message(text, secrets)}")


# ---------------------------------------------------------------- requests and answers


def prompt_as_chat(request: CompletionsRequest) -> ChatRequest:
    """A completions request as a chat request: the prompt as one user message, same params."""
    return ChatRequest(messages=[ChatMessage(role="user", content=request.prompt)], params=request.params)


def refuse_penalties(params: CommonParams, where: str) -> None:
    """InvalidRequest for a non-zero presence/frequency penalty, which `where` (e.g. "provider
    'anthropic'") has no way to apply; a zero penalty, which many OpenAI clients send, is a no-op."""
    penalties = {"presence_penalty": params.presence_penalty, "frequency_penalty": params.frequency_penalty}
    refused = [name for name, value in penalties.items() if value]
    if refused:
        raise InvalidRequest(f"{' and '.join(refused)} not supported by {where}; leave them unset or 0.")


def optional_str(value: Any) -> str | None:
    """`value` as stripped text; None for None or blank."""
    text = str(value).strip() if value is not None else ""
    return text or None


def optional_int(value: Any) -> int | None:
    """A JSON number as an int; None for anything else (booleans included)."""
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def as_mapping(value: Any) -> Mapping[str, Any]:
    """`value` if it is a mapping, else an empty one."""
    return value if isinstance(value, Mapping) else {}

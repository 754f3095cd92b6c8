"""Helpers shared by the HTTP vendor adapters: JSON bodies, header look-ups, safe vendor messages.

Pure functions over plain data; no I/O.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from typing import Any

import orjson

from providers.base import Secrets, redact

# Vendors' messages reach API callers; anything longer is noise (or a stack trace).
MAX_VENDOR_MESSAGE = 500

# Masked keys as vendors echo them ("sk-abc1***************wxyz", "sk-proj-****...6F0A"): matched
# whole, before `redact()` swaps the known prefix/suffix and would leave the characters in between.
_MASKED_KEY = re.compile(r"\b(?:sk|pk|rk|key|gw)[-_][A-Za-z0-9_\-]*\*+[A-Za-z0-9_\-*]*")
# OpenAI names the organization in rate-limit messages; callers have no business knowing it.
_ORG_ID = re.compile(r"\borg-[A-Za-z0-9]{6,}\b")


def load_json(body: bytes) -> Any:
    """Decode a JSON body; raises `orjson.JSONDecodeError` (a ValueError) on anything else."""
    return orjson.loads(body)


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
    try:
        data = load_json(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
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

"""Bedrock's error answers → the GatewayError callers see.

Bedrock (restJson) answers `{"message": "..."}` with the error's type in the `x-amzn-ErrorType`
header (`ThrottlingException:http://internal.amazon.com/...`). The type decides where the status
alone would mislead:

- AccessDenied (403; no permission, or no access to the model) → 502 UPSTREAM_AUTH_FAILED, fixed text.
- UnrecognizedClient, InvalidSignature, ExpiredToken, MissingAuthenticationToken (403) → 502
  UPSTREAM_AUTH_FAILED, fixed text.
- Throttling (429), ServiceQuotaExceeded (400) → 502 UPSTREAM_RATE_LIMITED (with Retry-After if sent).
- ModelNotReady (429: the model is loading, retry) → 502 UPSTREAM_ERROR.
- ModelTimeout (408) → 504 UPSTREAM_TIMEOUT.
- Validation (400), ResourceNotFound (404), 413, 422 → 400 UPSTREAM_BAD_REQUEST with the message.
- ModelError (424), InternalServer (500), ServiceUnavailable (503), anything else → 502 UPSTREAM_ERROR.

Messages are redacted: the route's secrets, key-looking tokens, and ARNs (which name the account).
"""

from __future__ import annotations

import re

from providers.base import GatewayError, Secrets, UpstreamResponse, UpstreamTimeout
from providers.common import (
    AUTH_FAILED_TEXT,
    auth_failed_error,
    header,
    json_object,
    map_vendor_error,
    rate_limited_error,
    retry_after_seconds,
    safe_vendor_message,
    upstream_error,
    with_detail,
)

ACCESS_DENIED_TEXT = (
    "The upstream provider denied access: the route's AWS identity may lack permission to invoke this "
    "model, or the account has not been granted access to it in this region."
)
_CREDENTIAL_TYPES = frozenset({
    "unrecognizedclientexception",
    "invalidsignatureexception",
    "expiredtokenexception",
    "missingauthenticationtokenexception",
    "incompletesignatureexception",
    "invalidclienttokenid",
    "signaturedoesnotmatch",
})
_RATE_LIMITED_TYPES = frozenset({"throttlingexception", "servicequotaexceededexception", "toomanyrequestsexception"})
_ARN = re.compile(r"\barn:aws[\w-]*:[\w-]+:[\w-]*:\d{12}:[^\s\"',;]+")
_ACCOUNT_IN_TEXT = re.compile(r"\b\d{12}\b")


def error_type(response: UpstreamResponse) -> str:
    """The error's type, lower-cased: `x-amzn-ErrorType` (before any ':'), else the body's `__type`."""
    raw = header(response.headers, "x-amzn-ErrorType") or ""
    if not raw:
        data = json_object(response.body)
        if data is not None:
            raw = str(data.get("__type") or data.get("code") or "")
    return raw.split(":", 1)[0].rsplit("#", 1)[-1].strip().lower()


def bedrock_message(body: bytes) -> str | None:
    """`message` (or `Message`) of Bedrock's error body, else None."""
    data = json_object(body)
    if data is None:
        return None
    for key in ("message", "Message"):
        if isinstance(data.get(key), str):
            return str(data[key])
    return None


def redact_message(text: str | None, secrets: Secrets) -> str:
    """A Bedrock message fit for a caller: secrets, key-like tokens, ARNs and account ids removed."""
    if not text:
        return ""
    text = _ARN.sub("[REDACTED-ARN]", text)
    text = _ACCOUNT_IN_TEXT.sub("[REDACTED]", text)
    return safe_vendor_message(text, secrets)


def error_from_vendor(response: UpstreamResponse, secrets: Secrets) -> GatewayError:
    """A Bedrock error answer → the GatewayError callers see (never with a credential in it)."""
    status, kind = response.status, error_type(response)
    if kind == "accessdeniedexception":
        return auth_failed_error(ACCESS_DENIED_TEXT)
    if status in (401, 403) or kind in _CREDENTIAL_TYPES:
        return auth_failed_error()
    message = redact_message(bedrock_message(response.body), secrets)
    if kind in _RATE_LIMITED_TYPES or (status == 429 and kind != "modelnotreadyexception"):
        return rate_limited_error(message, retry_after_seconds(response.headers))
    if kind == "modeltimeoutexception" or status == 408:
        return UpstreamTimeout(with_detail("The upstream model took too long to answer", message))
    if status == 429:  # ModelNotReady: the model is loading; worth a retry, but no rate limit was hit
        return upstream_error(status, message, retry_after=retry_after_seconds(response.headers))
    return map_vendor_error(response, secrets, message=message, retry_after_on_error=True)


__all__ = [
    "ACCESS_DENIED_TEXT",
    "AUTH_FAILED_TEXT",  # defined in providers.common
    "bedrock_message",
    "error_from_vendor",
    "error_type",
    "redact_message",
]

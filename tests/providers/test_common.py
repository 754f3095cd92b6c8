from __future__ import annotations

import email.utils

import orjson

from providers.base import Secrets
from providers.common import header, retry_after_seconds, safe_vendor_message, vendor_error_message


def test_header_lookup_ignores_case_on_plain_dicts() -> None:
    assert header({"Retry-After": "3"}, "retry-after") == "3"
    assert header({"retry-after": "3"}, "Retry-After") == "3"
    assert header({"x": "1"}, "retry-after") is None


def test_retry_after_reads_seconds_milliseconds_and_dates() -> None:
    assert retry_after_seconds({"Retry-After": "7"}) == 7.0
    assert retry_after_seconds({"Retry-After": "1.5"}) == 1.5
    # OpenAI and Azure also send retry-after-ms, which is more precise: it wins.
    assert retry_after_seconds({"retry-after-ms": "250", "Retry-After": "1"}) == 0.25
    date = email.utils.formatdate(1_000_030.0, usegmt=True)
    assert retry_after_seconds({"Retry-After": date}, now=1_000_000.0) == 30.0
    assert retry_after_seconds({"Retry-After": date}, now=2_000_000.0) == 0.0
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_vendor_error_message_understands_the_common_error_shapes() -> None:
    assert vendor_error_message(orjson.dumps({"error": {"message": "bad model", "type": "x"}})) == "bad model"
    assert vendor_error_message(orjson.dumps({"error": "model 'x' not found"})) == "model 'x' not found"
    assert (
        vendor_error_message(orjson.dumps({"object": "error", "message": "vllm says no"})) == "vllm says no"
    )
    assert vendor_error_message(orjson.dumps({"detail": "Not Found"})) == "Not Found"
    assert vendor_error_message(b"<html>502</html>") is None
    assert vendor_error_message(orjson.dumps([1, 2])) is None


def test_safe_vendor_message_removes_full_and_partially_masked_keys() -> None:
    key = "sk-abcd1234efgh5678ijkl9012"
    secrets = Secrets({"openai_api_key": key})
    text = (
        f"Incorrect API key provided: {key[:8]}{'*' * 14}{key[-4:]}. "
        f"Also the whole key {key} and org org-AbCdEf123456 were named."
    )
    cleaned = safe_vendor_message(text, secrets)
    for fragment in (key, key[:8], key[3:8], key[-4:], "org-AbCdEf123456"):
        assert fragment not in cleaned
    assert cleaned.startswith("Incorrect API key provided: [REDACTED]")


def test_safe_vendor_message_matches_keys_stored_with_a_trailing_newline() -> None:
    secrets = Secrets({"openai_api_key": "0123456789abcdef0123456789abcdef\n"})
    cleaned = safe_vendor_message("key 0123456789abcdef0123456789abcdef is wrong", secrets)
    assert "0123456789abcdef" not in cleaned


def test_safe_vendor_message_caps_length_and_flattens_whitespace() -> None:
    cleaned = safe_vendor_message("line one\n\n  line two " + "x" * 1000, Secrets())
    assert cleaned.startswith("line one line two x")
    assert len(cleaned) == 500
    assert cleaned.endswith("...")
    assert safe_vendor_message(None, Secrets()) == ""

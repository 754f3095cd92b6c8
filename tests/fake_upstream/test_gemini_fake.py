"""The fake Gemini API itself: its auth, validation, error bodies and stream framing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fake_upstream import FakeUpstream

USER = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


def _post(fake: FakeUpstream, method: str, body: Any, *, model: str = "gemini-2.0-flash",
          headers: dict[str, str] | None = None, params: dict[str, str] | None = None) -> httpx.Response:
    auth = {"x-goog-api-key": FakeUpstream.GEMINI_KEY} if headers is None else headers
    return httpx.post(f"{fake.gemini_base}/models/{model}:{method}", json=body, headers=auth, params=params,
                      timeout=5)


def test_the_key_is_taken_from_the_header_or_the_key_query(fake: FakeUpstream) -> None:
    assert _post(fake, "generateContent", USER).status_code == 200
    assert _post(fake, "generateContent", USER, headers={}, params={"key": FakeUpstream.GEMINI_KEY}).status_code == 200
    missing = _post(fake, "generateContent", USER, headers={})
    assert missing.status_code == 403 and missing.json()["error"]["status"] == "PERMISSION_DENIED"


def test_a_wrong_key_is_googles_400_api_key_invalid(fake: FakeUpstream) -> None:
    response = _post(fake, "generateContent", USER, headers={"x-goog-api-key": "AIzaWrong"})
    error = response.json()["error"]
    assert (response.status_code, error["code"], error["status"]) == (400, 400, "INVALID_ARGUMENT")
    assert error["details"][0]["reason"] == "API_KEY_INVALID"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"messages": [{"role": "user", "content": "Hi"}]}, 'Unknown name "messages"'),
        ({**USER, "generationConfig": {"max_tokens": 5}}, 'Unknown name "max_tokens" at \'generation_config\''),
        ({"contents": []}, "contents is not specified"),
        ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "valid role"),
        ({"contents": [{"role": "user", "parts": [{"text": "a"}]}, {"role": "user", "parts": [{"text": "b"}]}]},
         "alternate"),
        ({"contents": [{"role": "user", "parts": [{"text": ""}]}]}, "oneof field 'data'"),
        ({**USER, "generationConfig": {"temperature": 2.5}}, "temperature"),
    ],
)
def test_invalid_requests_get_googles_400(fake: FakeUpstream, body: dict[str, Any], message: str) -> None:
    response = _post(fake, "generateContent", body)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_stream_is_sse_with_crlf_framing_only_with_alt_sse(fake: FakeUpstream) -> None:
    sse = _post(fake, "streamGenerateContent", USER, params={"alt": "sse"})
    assert sse.headers["content-type"].startswith("text/event-stream")
    assert sse.text.startswith("data: {") and "\r\n\r\n" in sse.text
    array = _post(fake, "streamGenerateContent", USER)
    assert isinstance(array.json(), list) and array.json()[-1]["candidates"][0]["finishReason"] == "STOP"


def test_embed_content_and_a_mismatched_batch_model(fake: FakeUpstream) -> None:
    single = _post(fake, "embedContent", {"content": {"parts": [{"text": "x"}]}}, model="text-embedding-004")
    assert len(single.json()["embedding"]["values"]) == 8
    batch = {"requests": [{"model": "models/other", "content": {"parts": [{"text": "x"}]}}]}
    assert _post(fake, "batchEmbedContents", batch, model="text-embedding-004").status_code == 400


def test_429_carries_retry_info_instead_of_a_retry_after_header(fake: FakeUpstream) -> None:
    fake.add_fault("429-4")
    response = _post(fake, "generateContent", USER)
    assert response.status_code == 429 and "retry-after" not in response.headers
    assert response.json()["error"]["details"][-1]["retryDelay"] == "4s"

"""The fake upstream itself: OpenAI's error shapes, Azure's, control endpoints, the CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fake_upstream import FakeUpstream

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


def _post(url: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(url, json=body, headers=headers or {}, timeout=5)


def _openai_auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {FakeUpstream.OPENAI_KEY}"}


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("chat/completions", {"model": "gpt-4o-mini"}, "messages"),
        ("completions", {"model": "gpt-3.5-turbo-instruct"}, "prompt"),
        ("embeddings", {"model": "text-embedding-3-small"}, "input"),
    ],
)
def test_missing_required_fields_answer_openais_400(
    fake: FakeUpstream, path: str, body: Any, param: str
) -> None:
    response = _post(f"{fake.openai_base}/{path}", body, _openai_auth())
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["param"], error["type"]) == (param, "invalid_request_error")


def test_missing_model_is_a_400(fake: FakeUpstream) -> None:
    response = _post(
        f"{fake.openai_base}/chat/completions",
        {"messages": [{"role": "user", "content": "x"}]},
        _openai_auth(),
    )
    assert response.status_code == 400
    assert "model" in response.json()["error"]["message"]


def test_missing_or_wrong_key_answers_401_in_openais_shape(fake: FakeUpstream) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}
    missing = _post(f"{fake.openai_base}/chat/completions", body)
    assert missing.status_code == 401
    assert "didn't provide an API key" in missing.json()["error"]["message"]
    wrong = _post(
        f"{fake.openai_base}/chat/completions", body, {"Authorization": "Bearer sk-abcdefgh12345678wxyz"}
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_api_key"
    assert f"sk-abcde{'*' * 11}wxyz" in wrong.json()["error"]["message"]


def test_azure_checks_key_and_api_version(fake: FakeUpstream) -> None:
    url = f"{fake.url}/openai/deployments/d1/chat/completions"
    body = {"messages": [{"role": "user", "content": "x"}]}
    assert _post(f"{url}?api-version=2024-02-01", body, {"api-key": "wrong"}).status_code == 401
    assert _post(url, body, {"api-key": FakeUpstream.AZURE_KEY}).status_code == 404
    ok = _post(f"{url}?api-version=2024-02-01", body, {"api-key": FakeUpstream.AZURE_KEY})
    assert ok.status_code == 200
    assert ok.json()["object"] == "chat.completion"
    assert ok.json()["model"] == "d1"


def test_models_list(fake: FakeUpstream) -> None:
    response = httpx.get(f"{fake.openai_base}/models", headers=_openai_auth())
    assert response.status_code == 200
    assert "gpt-4o-mini" in [m["id"] for m in response.json()["data"]]


def test_recording_reset_and_queued_faults(fake: FakeUpstream) -> None:
    fake.reset()
    fake.add_fault("503", times=2)
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}
    statuses = [
        _post(f"{fake.openai_base}/chat/completions", body, _openai_auth()).status_code for _ in range(3)
    ]
    assert statuses == [503, 503, 200]
    assert [r.path for r in fake.requests] == ["/v1/chat/completions"] * 3
    assert fake.last_request.json == body
    fake.reset()
    assert fake.requests == []
    with pytest.raises(ValueError, match="unknown fault"):
        fake.add_fault("explode")


def test_runs_as_a_separate_process_controlled_over_http() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_upstream.server", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        base = info["url"]
        assert httpx.post(f"{base}/__fake__/faults", json={"fault": "429-4"}).status_code == 200
        assert httpx.post(f"{base}/__fake__/faults", json={"fault": "nope"}).status_code == 400
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        headers = {"Authorization": f"Bearer {info['openai_key']}"}
        limited = _post(f"{base}/v1/chat/completions", body, headers)
        assert (limited.status_code, limited.headers["retry-after"]) == (429, "4")
        assert _post(f"{base}/v1/chat/completions", body, headers).status_code == 200
        recorded = httpx.get(f"{base}/__fake__/requests").json()
        assert [r["json"] for r in recorded] == [body, body]
        assert recorded[0]["headers"]["authorization"] == f"Bearer {info['openai_key']}"
        httpx.post(f"{base}/__fake__/reset")
        assert httpx.get(f"{base}/__fake__/requests").json() == []
    finally:
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
    assert exit_code == 0

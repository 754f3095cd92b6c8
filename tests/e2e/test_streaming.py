"""Streaming on the real server: SSE in OpenAI's chunk shape through /v1 (openai SDK, sync and async)
and MLflow deployments; no buffering (time to first chunk against a slow vendor); usage recorded for
every stream, including abandoned and failed ones."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.e2e.test_serving_mlflow_routes import KEY, ready, usage_for, wait_for
from usage.models import UsageEvent

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

MESSAGES = [{"role": "user", "content": "Tell me a long story about a gateway"}]


@pytest.fixture
def caller(make_route, make_caller, gateway_server, fake_upstream) -> Any:
    oa = {"openai_api_key": KEY, "openai_api_base": fake_upstream.openai_base}
    routes = (
        make_route(name="s-mock"),
        make_route(name="s-mock-comp", route_type="llm/v1/completions"),
        make_route(name="s-oa", provider="openai", model_name="gpt-4o-mini", config=oa, max_retries=0),
        make_route(name="s-emb", route_type="llm/v1/embeddings"),
    )
    c = make_caller(routes=routes)
    ready(gateway_server, c.key, *(r.name for r in routes))
    fake_upstream.reset()
    return c


def sse_events(response: httpx.Response) -> list[Any]:
    events = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            data = line.removeprefix("data: ")
            events.append(data if data == "[DONE]" else orjson.loads(data))
    return events


def test_openai_sdk_streams_chat_with_usage(gateway_server, caller) -> None:
    client = openai.OpenAI(base_url=f"{gateway_server.url}/v1", api_key=caller.key, max_retries=0)
    plain = client.chat.completions.create(model="s-oa", messages=MESSAGES)  # type: ignore[arg-type]
    stream = client.chat.completions.create(model="s-oa", messages=MESSAGES, stream=True,  # type: ignore[arg-type]
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == plain.usage.total_tokens  # type: ignore[union-attr]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]


def test_usage_is_passed_on_only_when_asked_but_always_recorded(gateway_server, caller) -> None:
    with httpx.Client(base_url=gateway_server.url, timeout=30) as client, client.stream(
        "POST", "/v1/chat/completions", headers=caller.headers,
        json={"model": "s-oa", "messages": MESSAGES, "stream": True},
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
        request_id = response.headers["x-request-id"]
    assert events[-1] == "[DONE]"
    assert all("usage" not in e for e in events[:-1])
    event = wait_for(lambda: UsageEvent.objects.filter(request_id=request_id).first())
    assert event.stream and event.status_code == 200 and not event.tokens_estimated
    assert event.output_tokens > 0 and event.ttft_ms is not None and event.ttft_ms <= event.latency_ms


async def test_async_sdk_streams_completions(gateway_server, caller) -> None:
    client = openai.AsyncOpenAI(base_url=f"{gateway_server.url}/v1", api_key=caller.key, max_retries=0)
    stream = await client.completions.create(model="s-mock-comp", prompt="Once upon a time", stream=True)
    text = "".join([c.choices[0].text async for c in stream if c.choices])
    assert text == "This is a mock completion of: Once upon a time"
    await client.close()


def test_deployments_api_streams_sse_ending_with_done(gateway_server, caller) -> None:
    with httpx.Client(base_url=gateway_server.url, timeout=30) as client, client.stream(
        "POST", "/endpoints/s-mock/invocations", headers=caller.headers,
        json={"messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}},
    ) as response:
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    assert events[0]["object"] == "chat.completion.chunk" and events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert events[-2]["usage"]["completion_tokens"] > 0


def test_first_chunk_is_forwarded_at_once_from_a_slow_vendor(gateway_server, caller, fake_upstream) -> None:
    fake_upstream.add_fault("stream-slow-0.25")
    started = time.monotonic()
    arrivals = []
    with httpx.Client(base_url=gateway_server.url, timeout=30) as client, client.stream(
        "POST", "/v1/chat/completions", headers=caller.headers,
        json={"model": "s-oa", "messages": MESSAGES, "stream": True},
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.monotonic() - started)
    # The vendor waits 0.25 s before each chunk; with no buffering the first one reaches us after
    # ~0.25 s, long before the whole stream (about 0.25 s per chunk) is done.
    assert len(arrivals) >= 8
    assert arrivals[0] < 0.25 + 0.3
    assert arrivals[-1] > 0.25 * (len(arrivals) - 1) * 0.9
    assert arrivals[1] - arrivals[0] > 0.15


def test_abandoned_stream_closes_upstream_and_is_recorded_with_tokens_so_far(gateway_server, caller,
                                                                            fake_upstream) -> None:
    fake_upstream.add_fault("stream-slow-0.3")
    with httpx.Client(base_url=gateway_server.url, timeout=30) as client, client.stream(
        "POST", "/v1/chat/completions", headers=caller.headers,
        json={"model": "s-oa", "messages": MESSAGES, "stream": True},
    ) as response:
        request_id = response.headers["x-request-id"]
        got: list[str] = []
        for line in response.iter_lines():
            if line.startswith("data: "):
                got.append(line)
            if len(got) == 3:
                break
    event = wait_for(lambda: UsageEvent.objects.filter(request_id=request_id).first(), timeout=10)
    assert (event.status_code, event.error_code, event.stream) == (499, "CLIENT_CLOSED_REQUEST", True)
    assert event.tokens_estimated and 0 < event.output_tokens < 15
    assert event.input_tokens > 0


def test_vendor_error_mid_stream_ends_with_an_error_event(gateway_server, caller, fake_upstream) -> None:
    fake_upstream.add_fault("stream-error")
    with httpx.Client(base_url=gateway_server.url, timeout=30) as client, client.stream(
        "POST", "/v1/chat/completions", headers=caller.headers,
        json={"model": "s-oa", "messages": MESSAGES, "stream": True},
    ) as response:
        events = sse_events(response)
        request_id = response.headers["x-request-id"]
    assert response.status_code == 200
    assert events[-1]["error"]["code"] == "upstream_error" and "[DONE]" not in events
    fake_upstream.add_fault("stream-cut")
    with httpx.Client(base_url=gateway_server.url, timeout=30) as client, client.stream(
        "POST", "/endpoints/s-oa/invocations", headers=caller.headers, json={"messages": MESSAGES, "stream": True},
    ) as response:
        cut = sse_events(response)
    assert cut[-1]["error_code"] == "UPSTREAM_UNAVAILABLE"
    event = wait_for(lambda: UsageEvent.objects.filter(request_id=request_id).first())
    assert (event.status_code, event.error_code) == (502, "UPSTREAM_ERROR")


def test_errors_before_the_first_chunk_are_plain_responses(gateway_server, caller, fake_upstream) -> None:
    fake_upstream.add_fault("500")
    client = openai.OpenAI(base_url=f"{gateway_server.url}/v1", api_key=caller.key, max_retries=0)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="s-oa", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    assert caught.value.status_code == 502
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="s-emb", input="x", extra_body={"stream": True})
    with httpx.Client(base_url=gateway_server.url) as raw:
        refused = raw.post("/gateway/s-mock/invocations", headers=caller.headers,
                           json={"messages": MESSAGES, "stream": True})
    assert refused.status_code == 400  # the MLflow 2.5 route API has no streaming
    assert usage_for(refused).status_code == 400

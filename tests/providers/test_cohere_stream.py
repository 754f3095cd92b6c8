"""Cohere v2 chat streaming: the event parser over plain bytes, and streams from the fake upstream."""

from __future__ import annotations

import time

import orjson
import pytest

from providers.base import (
    ChatMessage,
    ChatRequest,
    CommonParams,
    CompletionsRequest,
    Secrets,
    Target,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from providers.client import UpstreamClient, execute, execute_stream
from providers.cohere import CohereProvider, CohereStreamParser
from tests.fake_upstream import FakeUpstream
from tests.providers._vendor_checks import answer_text, collect, finish_reasons, joined, text_chunks

cohere = CohereProvider()
MODEL = "command-r-08-2024"
CHAT = ChatRequest([ChatMessage("system", "Be brief."), ChatMessage("user", "Tell me a story")])
USAGE = {"billed_units": {"input_tokens": 3, "output_tokens": 10}, "tokens": {"input_tokens": 69, "output_tokens": 10}}


def event(data: dict[str, object]) -> bytes:
    return f"event: {data['type']}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


WIRE = b"".join([
    event({"id": "c-1", "type": "message-start", "delta": {"message": {"role": "assistant", "content": []}}}),
    event({"type": "content-start", "index": 0, "delta": {"message": {"content": {"type": "thinking",
                                                                                  "thinking": ""}}}}),
    event({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"thinking": "hmm"}}}}),
    event({"type": "content-end", "index": 0}),
    event({"type": "content-start", "index": 1, "delta": {"message": {"content": {"type": "text", "text": ""}}}}),
    event({"type": "content-delta", "index": 1, "delta": {"message": {"content": {"text": "Hello"}}}}),
    event({"type": "content-delta", "index": 1, "delta": {"message": {"content": {"text": " world"}}}}),
    event({"type": "citation-start", "index": 0, "delta": {"message": {"citations": {}}}}),
    event({"type": "content-end", "index": 1}),
    event({"type": "message-end", "delta": {"finish_reason": "MAX_TOKENS", "usage": USAGE}}),
])


def test_the_parser_turns_v2_events_into_chunks_whatever_the_splits() -> None:
    parser = CohereStreamParser(model=MODEL, secrets=Secrets())
    chunks = [c for i in range(0, len(WIRE), 13) for c in parser.feed(WIRE[i : i + 13])] + parser.close()
    assert chunks[0].deltas[0].role == "assistant" and chunks[0].id == "c-1" and chunks[0].model == MODEL
    assert joined(chunks) == "Hello world"  # the thinking item is not the answer
    assert finish_reasons(chunks) == ["length"]
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1 and (usage[0].input_tokens, usage[0].output_tokens) == (69, 10)  # `tokens` first


def test_a_failed_generation_or_an_error_body_raises_mid_stream() -> None:
    parser = CohereStreamParser(model=MODEL, secrets=Secrets())
    wire = (event({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": "Hi"}}}})
            + event({"type": "message-end", "delta": {"finish_reason": "ERROR"}}))
    assert joined(parser.feed(wire)) == "Hi"
    with pytest.raises(UpstreamError, match="mid-stream"):
        parser.close()
    with pytest.raises(UpstreamError, match="mid-stream: internal server error"):
        CohereStreamParser(model=MODEL, secrets=Secrets()).feed(
            b'data: {"id": "x", "message": "internal server error"}\n\n')


def test_the_stream_request_asks_for_sse() -> None:
    target = Target("cohere", MODEL, {"cohere_api_base": "http://x"}, Secrets({"cohere_api_key": "k"}))
    plain, streamed = cohere.build_request(target, CHAT), cohere.build_stream_request(target, CHAT)
    assert streamed.url == plain.url == "http://x/v2/chat"
    assert streamed.json == {**plain.json, "stream": True} and streamed.headers["Accept"] == "text/event-stream"
    assert cohere.supports_streaming


# ---------------------------------------------------------------- against the fake upstream


def cohere_target(fake: FakeUpstream) -> Target:
    secrets = Secrets({"cohere_api_key": FakeUpstream.COHERE_KEY})
    return Target("cohere", MODEL, {"cohere_api_base": fake.cohere_base}, secrets)


@pytest.mark.parametrize("request_", [CHAT, CompletionsRequest("Once upon a time")])
async def test_a_stream_equals_the_plain_answer_and_ends_with_cohere_usage(
    fake_upstream: FakeUpstream, client: UpstreamClient, request_: ChatRequest | CompletionsRequest
) -> None:
    chunks = await collect(cohere, cohere_target(fake_upstream), request_, client)
    assert fake_upstream.last_request.json["stream"] is True
    plain = await execute(cohere, cohere_target(fake_upstream), request_, client=client)
    assert joined(chunks) == answer_text(plain)
    assert text_chunks(chunks) > 3 and finish_reasons(chunks) == ["stop"]
    assert [c.usage for c in chunks if c.usage] == [plain.usage]


async def test_a_stop_sequence_ends_the_stream_with_stop(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    request = ChatRequest(CHAT.messages, CommonParams(stop=["answer"]))
    chunks = await collect(cohere, cohere_target(fake_upstream), request, client)
    assert joined(chunks) == "Fake Cohere " and finish_reasons(chunks) == ["stop"]


async def test_a_failed_generation_mid_stream_raises_after_the_first_text(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    fake_upstream.add_fault("stream-error")
    seen = []
    with pytest.raises(UpstreamError) as caught:
        async for chunk in execute_stream(cohere, cohere_target(fake_upstream), CHAT, client=client):
            seen.append(chunk)
    assert joined(seen) and "mid-stream" in caught.value.message


async def test_a_cut_stream_and_a_status_before_it(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    fake_upstream.add_fault("stream-cut")
    with pytest.raises(UpstreamUnavailable):
        await collect(cohere, cohere_target(fake_upstream), CHAT, client)
    fake_upstream.add_fault("429-5")
    with pytest.raises(UpstreamError) as caught:
        await collect(cohere, cohere_target(fake_upstream), CHAT, client)
    assert (caught.value.code, caught.value.retry_after) == ("UPSTREAM_RATE_LIMITED", 5.0)


async def test_chunks_arrive_as_cohere_sends_them(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    fake_upstream.add_fault("stream-slow-0.1")
    started, first_at = time.monotonic(), None
    async for _chunk in execute_stream(cohere, cohere_target(fake_upstream), CHAT, client=client):
        first_at = first_at or time.monotonic() - started
    assert first_at is not None and first_at < 0.4 < time.monotonic() - started
    fake_upstream.add_fault("stream-slow-0.5")
    with pytest.raises(UpstreamTimeout):
        await collect(cohere, cohere_target(fake_upstream), CHAT, client, idle_timeout=0.2)

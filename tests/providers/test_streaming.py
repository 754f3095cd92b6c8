"""Streaming: the SSE decoder, OpenAI's stream through `execute_stream` against the fake upstream,
stream faults, and the mock's local stream."""

from __future__ import annotations

import time

import pytest

from providers.base import (
    ChatMessage,
    ChatRequest,
    CommonParams,
    CompletionsRequest,
    Target,
    UpstreamError,
    UpstreamUnavailable,
)
from providers.client import UpstreamClient, execute, execute_stream
from providers.registry import get_provider
from providers.streaming import SSEDecoder, StreamChunk
from tests.fake_upstream.server import FakeUpstream
from tests.providers.test_openai_upstream import openai_target

CHAT = ChatRequest([ChatMessage("user", "Tell me a story")], CommonParams(max_tokens=50))


def test_sse_decoder_handles_splits_crlf_comments_and_multiline_data() -> None:
    decoder = SSEDecoder()
    wire = ": keep-alive\r\nevent: delta\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\ndata: é\n\ndata: [DONE]\n\n".encode()
    events = []
    for i in range(len(wire)):  # one byte at a time, splitting the two-byte é too
        events += decoder.feed(wire[i : i + 1])
    events += decoder.close()
    assert [(e.event, e.data) for e in events] == [
        ("delta", '{"a":\n1}'), ("message", "é"), ("message", "[DONE]")]


def test_sse_decoder_flushes_a_last_event_without_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: tail") == []
    assert [e.data for e in decoder.close()] == ["tail"]


def joined(chunks: list[StreamChunk], index: int = 0) -> str:
    return "".join(d.text for c in chunks for d in c.deltas if d.index == index)


async def collect(target: Target, request: ChatRequest | CompletionsRequest, client: UpstreamClient,
                  **kwargs: float) -> list[StreamChunk]:
    return [c async for c in execute_stream(get_provider("openai"), target, request, client=client, **kwargs)]


async def test_openai_stream_equals_the_plain_answer_and_ends_with_vendor_usage(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    target = openai_target(fake_upstream)
    chunks = await collect(target, CHAT, client)
    plain = await execute(get_provider("openai"), target, CHAT, client=client)
    assert joined(chunks) == plain.choices[0].message.content  # type: ignore[union-attr]
    assert len([c for c in chunks if any(d.text for d in c.deltas)]) > 3  # really piece by piece
    assert chunks[0].deltas[0].role == "assistant"
    assert [d.finish_reason for c in chunks for d in c.deltas if d.finish_reason] == ["stop"]
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1 and usage[0].input_tokens == plain.usage.input_tokens
    assert usage[0].output_tokens == plain.usage.output_tokens
    sent = fake_upstream.requests[-2].json  # the streamed call, before the plain one
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


async def test_openai_completions_stream(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    request = CompletionsRequest("Once upon a time", CommonParams(n=2))
    chunks = await collect(openai_target(fake_upstream, model="gpt-3.5-turbo-instruct"), request, client)
    assert joined(chunks, 0) == joined(chunks, 1) == "Fake completion of: Once upon a time"


async def test_first_chunk_arrives_before_a_slow_stream_ends(fake_upstream: FakeUpstream,
                                                             client: UpstreamClient) -> None:
    fake_upstream.add_fault("stream-slow-0.15")
    started = time.monotonic()
    first_at = None
    count = 0
    async for _chunk in execute_stream(get_provider("openai"), openai_target(fake_upstream), CHAT, client=client):
        count += 1
        first_at = first_at or time.monotonic() - started
    total = time.monotonic() - started
    assert count >= 6
    assert first_at is not None and first_at < 0.5 and total > 0.15 * count * 0.9


async def test_idle_timeout_applies_between_chunks(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    from providers.base import UpstreamTimeout

    fake_upstream.add_fault("stream-slow-0.5")
    with pytest.raises(UpstreamTimeout):
        await collect(openai_target(fake_upstream), CHAT, client, idle_timeout=0.2)


async def test_vendor_error_mid_stream_raises_after_the_first_chunks(fake_upstream: FakeUpstream,
                                                                    client: UpstreamClient) -> None:
    fake_upstream.add_fault("stream-error")
    seen: list[StreamChunk] = []
    with pytest.raises(UpstreamError) as caught:
        async for chunk in execute_stream(get_provider("openai"), openai_target(fake_upstream), CHAT, client=client):
            seen.append(chunk)
    assert seen and "mid-stream" in caught.value.message


async def test_connection_cut_mid_stream_is_unavailable(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    fake_upstream.add_fault("stream-cut")
    with pytest.raises(UpstreamUnavailable):
        await collect(openai_target(fake_upstream), CHAT, client)


async def test_error_status_before_the_stream_maps_like_a_plain_call(fake_upstream: FakeUpstream,
                                                                    client: UpstreamClient) -> None:
    fake_upstream.add_fault("429-7")
    with pytest.raises(UpstreamError) as caught:
        await collect(openai_target(fake_upstream), CHAT, client)
    assert (caught.value.code, caught.value.retry_after) == ("UPSTREAM_RATE_LIMITED", 7)


async def test_closing_the_stream_early_stops_reading(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    fake_upstream.add_fault("stream-slow-0.2")
    stream = execute_stream(get_provider("openai"), openai_target(fake_upstream), CHAT, client=client)
    started = time.monotonic()
    await anext(stream)
    await stream.aclose()  # what the gateway does when its client goes away
    assert time.monotonic() - started < 1.0


async def test_mock_streams_the_same_answer_word_by_word() -> None:
    target = Target("mock", "mock-1")
    provider = get_provider("mock")
    chunks = [c async for c in execute_stream(provider, target, CHAT, client=None)]
    plain = await execute(provider, target, CHAT, client=None)
    assert joined(chunks) == plain.choices[0].message.content  # type: ignore[union-attr]
    assert chunks[-1].usage == plain.usage
    assert len(chunks) > 5

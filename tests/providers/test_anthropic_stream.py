"""Anthropic's Messages API streaming: the event parser over plain bytes, and streams from the fake upstream."""

from __future__ import annotations

import time

import orjson
import pytest

from providers.anthropic import AnthropicProvider, AnthropicStreamParser
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
from tests.fake_upstream import FakeUpstream
from tests.fake_upstream.openai import count_tokens
from tests.providers._vendor_checks import answer_text, collect, finish_reasons, joined, leaked_fragments, text_chunks

anthropic = AnthropicProvider()
MODEL = "claude-3-5-haiku-latest"
CHAT = ChatRequest([ChatMessage("system", "Be brief."), ChatMessage("user", "Tell me a story")],
                   CommonParams(max_tokens=60))


def event(kind: str, data: dict[str, object]) -> bytes:
    return f"event: {kind}\ndata: ".encode() + orjson.dumps({"type": kind, **data}) + b"\n\n"


WIRE = b"".join([
    event("message_start", {"message": {"id": "msg_1", "type": "message", "role": "assistant", "model": MODEL,
                                        "content": [], "stop_reason": None,
                                        "usage": {"input_tokens": 25, "output_tokens": 1,
                                                  "cache_read_input_tokens": 5}}}),
    event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
    event("ping", {}),
    event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
    event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": " there"}}),
    event("content_block_stop", {"index": 0}),
    event("content_block_start", {"index": 1, "content_block": {"type": "tool_use", "id": "t", "name": "f",
                                                                "input": {}}}),
    event("content_block_delta", {"index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"a\""}}),
    event("content_block_stop", {"index": 1}),
    event("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None},
                            "usage": {"output_tokens": 15}}),
    event("message_stop", {}),
])


def test_the_parser_turns_anthropics_events_into_chunks_whatever_the_splits() -> None:
    parser = AnthropicStreamParser(default_model="claude", secrets=Secrets())
    chunks = [c for i in range(0, len(WIRE), 11) for c in parser.feed(WIRE[i : i + 11])] + parser.close()
    assert chunks[0].deltas[0].role == "assistant" and chunks[0].id == "msg_1" and chunks[0].model == MODEL
    assert joined(chunks) == "Hello there"  # the tool_use block's JSON is not text
    assert finish_reasons(chunks) == ["stop"]
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1 and (usage[0].input_tokens, usage[0].output_tokens) == (30, 15)  # cache reads are input


def test_message_delta_counts_replace_message_start_counts() -> None:
    parser = AnthropicStreamParser(default_model="claude", secrets=Secrets())
    wire = (event("message_start", {"message": {"id": "m", "usage": {"input_tokens": 10, "output_tokens": 1}}})
            + event("message_delta", {"delta": {"stop_reason": "max_tokens"},
                                      "usage": {"input_tokens": 12, "output_tokens": 7}}))
    chunks = parser.feed(wire)
    assert chunks[-1].deltas[0].finish_reason == "length"
    assert chunks[-1].usage is not None and (chunks[-1].usage.input_tokens, chunks[-1].usage.output_tokens) == (12, 7)


def test_an_error_event_raises_once_the_text_before_it_is_handed_on() -> None:
    key = "sk-ant-api03-Wq7Hn2Zp9Lm4Xv8Tk3RbYc"
    parser = AnthropicStreamParser(default_model="claude", secrets=Secrets({"anthropic_api_key": key}))
    wire = (event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Hi"}})
            + event("error", {"error": {"type": "overloaded_error", "message": f"Overloaded ({key})"}}))
    assert joined(parser.feed(wire)) == "Hi"
    with pytest.raises(UpstreamError, match="mid-stream: Overloaded") as caught:
        parser.close()
    assert leaked_fragments(caught.value, key[len("sk-ant-api03-"):]) == []


def test_unknown_event_types_are_skipped() -> None:
    parser = AnthropicStreamParser(default_model="claude", secrets=Secrets())
    assert parser.feed(event("something_new", {"x": 1}) + event("content_block_delta", {
        "index": 0, "delta": {"type": "thinking_delta", "thinking": "hmm"}})) == []


def test_the_stream_request_is_the_plain_one_with_stream_true() -> None:
    target = Target("anthropic", MODEL, {"anthropic_api_base": "http://x"}, Secrets({"anthropic_api_key": "k"}))
    plain, streamed = anthropic.build_request(target, CHAT), anthropic.build_stream_request(target, CHAT)
    assert streamed.url == plain.url and streamed.headers == plain.headers
    assert streamed.json == {**plain.json, "stream": True}
    assert anthropic.supports_streaming


# ---------------------------------------------------------------- against the fake upstream


def anthropic_target(fake: FakeUpstream, *, model: str = MODEL) -> Target:
    return Target("anthropic", model, {"anthropic_api_base": fake.anthropic_base},
                  Secrets({"anthropic_api_key": FakeUpstream.ANTHROPIC_KEY}))


@pytest.mark.parametrize("request_", [CHAT, CompletionsRequest("Once upon a time", CommonParams(max_tokens=60))])
async def test_a_stream_equals_the_plain_answer_and_ends_with_anthropics_usage(
    fake_upstream: FakeUpstream, client: UpstreamClient, request_: ChatRequest | CompletionsRequest
) -> None:
    chunks = await collect(anthropic, anthropic_target(fake_upstream), request_, client)
    assert fake_upstream.last_request.json["stream"] is True
    plain = await execute(anthropic, anthropic_target(fake_upstream), request_, client=client)
    assert joined(chunks) == answer_text(plain)
    assert text_chunks(chunks) > 3 and finish_reasons(chunks) == ["stop"]
    assert [c.usage for c in chunks if c.usage] == [plain.usage]


async def test_a_stream_cut_by_max_tokens_ends_with_length(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    request = ChatRequest(CHAT.messages, CommonParams(max_tokens=2))
    chunks = await collect(anthropic, anthropic_target(fake_upstream), request, client)
    assert joined(chunks) == "Fake answer" and finish_reasons(chunks) == ["length"]
    assert [c.usage.output_tokens for c in chunks if c.usage] == [count_tokens("Fake answer")]


async def test_an_overloaded_error_mid_stream_raises_after_the_first_text(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    fake_upstream.add_fault("stream-error")
    seen = []
    with pytest.raises(UpstreamError) as caught:
        async for chunk in execute_stream(anthropic, anthropic_target(fake_upstream), CHAT, client=client):
            seen.append(chunk)
    assert joined(seen) and caught.value.message == "The upstream provider failed mid-stream: Overloaded"


async def test_a_cut_stream_and_statuses_before_it(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    fake_upstream.add_fault("stream-cut")
    with pytest.raises(UpstreamUnavailable):
        await collect(anthropic, anthropic_target(fake_upstream), CHAT, client)
    with pytest.raises(UpstreamError) as caught:
        await collect(anthropic, anthropic_target(fake_upstream, model="fault-529"), CHAT, client)
    assert caught.value.code == "UPSTREAM_ERROR" and "Overloaded" in caught.value.message


async def test_chunks_arrive_as_anthropic_sends_them(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    fake_upstream.add_fault("stream-slow-0.1")
    started, first_at = time.monotonic(), None
    async for _chunk in execute_stream(anthropic, anthropic_target(fake_upstream), CHAT, client=client):
        first_at = first_at or time.monotonic() - started
    assert first_at is not None and first_at < 0.4 < time.monotonic() - started
    fake_upstream.add_fault("stream-slow-0.5")
    with pytest.raises(UpstreamTimeout):
        await collect(anthropic, anthropic_target(fake_upstream), CHAT, client, idle_timeout=0.2)

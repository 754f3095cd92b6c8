"""Gemini calls through `execute` and `execute_stream` against the fake upstream over real HTTP."""

from __future__ import annotations

import time

import pytest

from providers.base import (
    ChatMessage,
    ChatRequest,
    ChatResponse,
    CommonParams,
    CompletionsRequest,
    CompletionsResponse,
    EmbeddingsRequest,
    EmbeddingsResponse,
    GatewayError,
    InvalidRequest,
    Secrets,
    StdRequest,
    Target,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from providers.client import UpstreamClient, execute, execute_stream
from providers.gemini import GeminiProvider
from providers.streaming import StreamChunk
from tests.fake_upstream import FakeUpstream
from tests.fake_upstream.gemini import BLOCK_ANSWER, BLOCK_PROMPT, THOUGHT_TOKENS
from tests.fake_upstream.openai import count_tokens, fake_embedding
from tests.providers.test_openai_upstream import _every_rendering

gemini = GeminiProvider()
CHAT = ChatRequest([ChatMessage("system", "You are terse."), ChatMessage("user", "What is 2+2?")])


def gemini_target(fake: FakeUpstream, *, model: str = "gemini-2.0-flash", key: str = FakeUpstream.GEMINI_KEY) -> Target:
    return Target("gemini", model, {"gemini_api_base": fake.gemini_base}, Secrets({"gemini_api_key": key}))


async def collect(target: Target, request: StdRequest, client: UpstreamClient, **kwargs: float) -> list[StreamChunk]:
    return [c async for c in execute_stream(gemini, target, request, client=client, **kwargs)]


def joined(chunks: list[StreamChunk], index: int = 0) -> str:
    return "".join(d.text for c in chunks for d in c.deltas if d.index == index)


# ---------------------------------------------------------------- plain calls


async def test_chat_sends_geminis_wire_format_with_the_key_in_a_header(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    request = ChatRequest(CHAT.messages, CommonParams(temperature=2.0, top_p=0.5))
    response = await execute(gemini, gemini_target(fake_upstream), request, client=client)

    sent = fake_upstream.last_request
    assert (sent.method, sent.path) == ("POST", "/v1beta/models/gemini-2.0-flash:generateContent")
    assert sent.headers["x-goog-api-key"] == FakeUpstream.GEMINI_KEY
    assert sent.query == {}  # never `?key=`: URLs end up in logs
    assert sent.json == {
        "contents": [{"role": "user", "parts": [{"text": "What is 2+2?"}]}],
        "systemInstruction": {"parts": [{"text": "You are terse."}]},
        "generationConfig": {"temperature": 2.0, "topP": 0.5},
    }
    assert isinstance(response, ChatResponse)
    assert response.model == "gemini-2.0-flash"
    assert response.id is not None
    assert [(c.message.role, c.message.content, c.finish_reason) for c in response.choices] == [
        ("assistant", "Fake Gemini answer to: What is 2+2?", "stop")]
    prompt = count_tokens("You are terse.") + count_tokens("What is 2+2?")
    output = count_tokens("Fake Gemini answer to: What is 2+2?")
    assert (response.usage.input_tokens, response.usage.output_tokens) == (prompt, output)
    assert response.usage.total_tokens == prompt + output and not response.usage.estimated


async def test_a_conversation_with_assistant_turns_and_repeated_roles_is_accepted(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    # The fake refuses roles other than user/model and two turns in a row with the same role.
    request = ChatRequest([
        ChatMessage("user", "Hi"),
        ChatMessage("assistant", "Hello."),
        ChatMessage("system", "Be kind."),
        ChatMessage("user", "I have two questions."),
        ChatMessage("user", "First: why?"),
    ])
    response = await execute(gemini, gemini_target(fake_upstream), request, client=client)
    assert [c["role"] for c in fake_upstream.last_request.json["contents"]] == ["user", "model", "user"]
    assert isinstance(response, ChatResponse)
    assert response.choices[0].message.content == "Fake Gemini answer to: First: why?"


async def test_n_candidates_max_tokens_and_stop(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    request = ChatRequest(CHAT.messages, CommonParams(n=2, max_tokens=3, stop=["never"]))
    response = await execute(gemini, gemini_target(fake_upstream), request, client=client)
    assert fake_upstream.last_request.json["generationConfig"] == {
        "candidateCount": 2, "maxOutputTokens": 3, "stopSequences": ["never"]}
    assert isinstance(response, ChatResponse)
    assert [(c.index, c.message.content, c.finish_reason) for c in response.choices] == [
        (0, "Fake Gemini answer", "length"), (1, "Fake Gemini answer", "length")]
    assert response.usage.output_tokens == 6


async def test_thinking_models_bill_their_thoughts_as_output(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    response = await execute(gemini, gemini_target(fake_upstream, model="gemini-2.5-flash"), CHAT, client=client)
    output = count_tokens("Fake Gemini answer to: What is 2+2?")
    assert response.usage.output_tokens == output + THOUGHT_TOKENS


async def test_completions(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    response = await execute(gemini, gemini_target(fake_upstream), CompletionsRequest("Once upon a time"),
                             client=client)
    assert fake_upstream.last_request.json == {"contents": [{"role": "user", "parts": [{"text": "Once upon a time"}]}]}
    assert isinstance(response, CompletionsResponse)
    assert response.choices[0].text == "Fake Gemini answer to: Once upon a time"
    assert response.usage.input_tokens == 4


async def test_embeddings_in_input_order_with_counted_usage(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    target = gemini_target(fake_upstream, model="text-embedding-004")
    response = await execute(gemini, target, EmbeddingsRequest(["first text", "second, text"]), client=client)
    assert fake_upstream.last_request.path == "/v1beta/models/text-embedding-004:batchEmbedContents"
    assert isinstance(response, EmbeddingsResponse)
    assert response.embeddings == [fake_embedding("first text"), fake_embedding("second, text")]
    assert response.usage.estimated and response.usage.input_tokens and response.usage.output_tokens == 0


# ---------------------------------------------------------------- safety


async def test_a_blocked_prompt_is_a_400_content_blocked(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    request = ChatRequest([ChatMessage("user", f"Please {BLOCK_PROMPT} this")])
    with pytest.raises(InvalidRequest) as caught:
        await execute(gemini, gemini_target(fake_upstream), request, client=client)
    assert (caught.value.status, caught.value.code) == (400, "CONTENT_BLOCKED")
    assert "SAFETY" in caught.value.message


async def test_a_blocked_answer_is_an_empty_candidate_with_content_filter(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    request = CompletionsRequest(f"Tell me {BLOCK_ANSWER}", CommonParams(n=2))
    response = await execute(gemini, gemini_target(fake_upstream), request, client=client)
    assert isinstance(response, CompletionsResponse)
    assert [(c.text, c.finish_reason) for c in response.choices] == [("", "content_filter")] * 2
    assert response.usage.output_tokens == 0 and not response.usage.estimated


async def test_a_blocked_prompt_fails_the_stream_before_any_chunk(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    stream = execute_stream(gemini, gemini_target(fake_upstream), ChatRequest([ChatMessage("user", BLOCK_PROMPT)]),
                            client=client)
    with pytest.raises(InvalidRequest) as caught:
        await anext(stream)
    assert (caught.value.status, caught.value.code) == (400, "CONTENT_BLOCKED")


async def test_a_streamed_answer_blocked_midway_ends_with_content_filter(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    chunks = await collect(gemini_target(fake_upstream), ChatRequest([ChatMessage("user", BLOCK_ANSWER)]), client)
    assert joined(chunks) == "Fake Gemini "
    assert [d.finish_reason for c in chunks for d in c.deltas if d.finish_reason] == ["content_filter"]
    assert chunks[-1].usage is not None and chunks[-1].usage.output_tokens == count_tokens("Fake Gemini")


# ---------------------------------------------------------------- errors and faults


async def test_a_wrong_key_is_an_auth_failure_and_no_part_of_it_leaks(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    wrong_key = "AIzaSyWRONG4q9Lm2Xv7Tk3Rb8Wc1Hd6Np0Zs5J"
    target = gemini_target(fake_upstream, key=wrong_key)
    # Google answers 400 INVALID_ARGUMENT, and its DebugInfo detail echoes the key...
    raw = await client.send(gemini.build_request(target, CHAT))
    assert raw.status == 400 and b"API_KEY_INVALID" in raw.body and wrong_key.encode() in raw.body

    # ...which must be a 502 auth failure with none of the key in it, plain or streamed.
    errors: list[GatewayError] = []
    with pytest.raises(GatewayError) as plain:
        await execute(gemini, target, CHAT, client=client)
    errors.append(plain.value)
    with pytest.raises(GatewayError) as streamed:
        await collect(target, CHAT, client)
    errors.append(streamed.value)
    secret_part = wrong_key[4:]
    fragments = {secret_part[i : i + 5] for i in range(len(secret_part) - 4)}
    for error in errors:
        assert (error.status, error.code) == (502, "UPSTREAM_AUTH_FAILED")
        rendered = _every_rendering(error)
        assert sorted(f for f in fragments if f in rendered) == []
        assert error.__cause__ is None and error.__context__ is None


async def test_a_missing_key_is_an_auth_failure(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    with pytest.raises(UpstreamError) as caught:
        await execute(gemini, gemini_target(fake_upstream, key=""), CHAT, client=client)
    assert fake_upstream.last_request.headers["x-goog-api-key"] == ""
    assert (caught.value.status, caught.value.code) == (502, "UPSTREAM_AUTH_FAILED")


async def test_a_model_that_cannot_generate_is_a_400_with_googles_message(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await execute(gemini, gemini_target(fake_upstream, model="text-embedding-004"), CHAT, client=client)
    assert (caught.value.status, caught.value.code) == (400, "UPSTREAM_BAD_REQUEST")
    assert "not supported for generateContent" in caught.value.message


@pytest.mark.parametrize(
    ("fault", "error_type", "status", "code"),
    [
        ("500", UpstreamError, 502, "UPSTREAM_ERROR"),
        ("503", UpstreamError, 502, "UPSTREAM_ERROR"),
        ("403", UpstreamError, 502, "UPSTREAM_AUTH_FAILED"),
        ("404", InvalidRequest, 400, "UPSTREAM_BAD_REQUEST"),
        ("garbage", UpstreamBadResponse, 502, "UPSTREAM_BAD_RESPONSE"),
        ("incomplete", UpstreamBadResponse, 502, "UPSTREAM_BAD_RESPONSE"),
        ("close", UpstreamUnavailable, 502, "UPSTREAM_UNAVAILABLE"),
        ("close-mid", UpstreamUnavailable, 502, "UPSTREAM_UNAVAILABLE"),
    ],
)
async def test_faults_map_to_the_right_codes(
    fake_upstream: FakeUpstream, client: UpstreamClient, fault: str, error_type: type[GatewayError], status: int,
    code: str,
) -> None:
    fake_upstream.add_fault(fault)
    with pytest.raises(error_type) as caught:
        await execute(gemini, gemini_target(fake_upstream), CHAT, client=client)
    assert (caught.value.status, caught.value.code) == (status, code)


async def test_429_retry_after_comes_from_googles_retry_info(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    fake_upstream.add_fault("429-7")
    with pytest.raises(UpstreamError) as caught:
        await execute(gemini, gemini_target(fake_upstream), CHAT, client=client)
    assert (caught.value.code, caught.value.retry_after) == ("UPSTREAM_RATE_LIMITED", 7.0)


async def test_a_slow_answer_times_out_as_504(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    fake_upstream.add_fault("sleep-1")
    with pytest.raises(UpstreamTimeout) as caught:
        await execute(gemini, gemini_target(fake_upstream), CHAT, client=client, timeout=0.2)
    assert caught.value.status == 504


# ---------------------------------------------------------------- streaming


async def test_stream_equals_the_plain_answer_and_ends_with_vendor_usage(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    target = gemini_target(fake_upstream)
    chunks = await collect(target, CHAT, client)
    streamed = fake_upstream.last_request
    plain = await execute(gemini, target, CHAT, client=client)
    assert streamed.path == "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    assert streamed.query == {"alt": "sse"}
    assert streamed.headers["x-goog-api-key"] == FakeUpstream.GEMINI_KEY
    assert isinstance(plain, ChatResponse)
    assert joined(chunks) == plain.choices[0].message.content
    assert len([c for c in chunks if any(d.text for d in c.deltas)]) > 3  # really piece by piece
    assert chunks[0].deltas[0].role == "assistant"
    assert [d.finish_reason for c in chunks for d in c.deltas if d.finish_reason] == ["stop"]
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1 and usage[0] == plain.usage


async def test_completions_stream_with_two_candidates(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    chunks = await collect(gemini_target(fake_upstream), CompletionsRequest("Once", CommonParams(n=2)), client)
    assert joined(chunks, 0) == joined(chunks, 1) == "Fake Gemini answer to: Once"
    assert all(d.role is None for c in chunks for d in c.deltas)


async def test_first_chunk_arrives_before_a_slow_stream_ends(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    fake_upstream.add_fault("stream-slow-0.15")
    started = time.monotonic()
    first_at = None
    count = 0
    async for _chunk in execute_stream(gemini, gemini_target(fake_upstream), CHAT, client=client):
        count += 1
        first_at = first_at or time.monotonic() - started
    total = time.monotonic() - started
    assert count >= 5
    assert first_at is not None and first_at < 0.5 and total > 0.15 * count * 0.9


async def test_vendor_error_mid_stream_raises_after_the_first_chunks(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    fake_upstream.add_fault("stream-error")
    seen: list[StreamChunk] = []
    with pytest.raises(UpstreamError) as caught:
        async for chunk in execute_stream(gemini, gemini_target(fake_upstream), CHAT, client=client):
            seen.append(chunk)
    assert seen and "mid-stream" in caught.value.message
    assert caught.value.status == 502


async def test_connection_cut_mid_stream_is_unavailable(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    fake_upstream.add_fault("stream-cut")
    with pytest.raises(UpstreamUnavailable):
        await collect(gemini_target(fake_upstream), CHAT, client)


async def test_error_status_before_the_stream_maps_like_a_plain_call(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    fake_upstream.add_fault("429-3")
    with pytest.raises(UpstreamError) as caught:
        await collect(gemini_target(fake_upstream), CHAT, client)
    assert (caught.value.code, caught.value.retry_after) == ("UPSTREAM_RATE_LIMITED", 3.0)


async def test_idle_timeout_applies_between_chunks(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    fake_upstream.add_fault("stream-slow-0.5")
    with pytest.raises(UpstreamTimeout):
        await collect(gemini_target(fake_upstream), CHAT, client, idle_timeout=0.2)

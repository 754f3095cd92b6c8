"""Mistral through `execute` and `execute_stream` against the fake upstream over real HTTP."""

from __future__ import annotations

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
    Target,
    UpstreamError,
    UpstreamRequest,
)
from providers.client import UpstreamClient, execute, execute_stream
from providers.mistral import MistralProvider
from tests.fake_upstream import FakeUpstream
from tests.fake_upstream.openai import count_tokens, fake_embedding
from tests.providers.test_openai_upstream import _every_rendering

mistral = MistralProvider()
CHAT = ChatRequest([ChatMessage("system", "You are terse."), ChatMessage("user", "What is 2+2?")])
ANSWER = "Fake answer to: What is 2+2?"


def target(fake: FakeUpstream, *, model: str = "mistral-small-latest", key: str = FakeUpstream.MISTRAL_KEY) -> Target:
    return Target("mistral", model, {"mistral_api_base": fake.mistral_base}, Secrets({"mistral_api_key": key}))


async def test_chat_sends_mistrals_wire_format_with_halved_temperature(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    request = ChatRequest(CHAT.messages, CommonParams(temperature=2.0, n=2, max_tokens=50))
    response = await execute(mistral, target(fake_upstream), request, client=client)
    sent = fake_upstream.last_request
    assert (sent.path, sent.headers["authorization"]) == ("/mistral/v1/chat/completions",
                                                          f"Bearer {FakeUpstream.MISTRAL_KEY}")
    assert sent.json["temperature"] == 1.0  # OpenAI's maximum is Mistral's maximum
    assert isinstance(response, ChatResponse)
    assert [c.message.content for c in response.choices] == [ANSWER, ANSWER]
    prompt = count_tokens("You are terse.") + count_tokens("What is 2+2?")
    assert (response.usage.input_tokens, response.usage.output_tokens) == (prompt, 2 * count_tokens(ANSWER))


async def test_completions_go_through_chat(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    response = await execute(mistral, target(fake_upstream), CompletionsRequest("Once upon a time"), client=client)
    assert fake_upstream.last_request.json["messages"] == [{"role": "user", "content": "Once upon a time"}]
    assert isinstance(response, CompletionsResponse)
    assert response.choices[0].text == "Fake answer to: Once upon a time"


async def test_embeddings(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    response = await execute(mistral, target(fake_upstream, model="mistral-embed"), EmbeddingsRequest(["a b", "c"]),
                             client=client)
    assert fake_upstream.last_request.path == "/mistral/v1/embeddings"
    assert isinstance(response, EmbeddingsResponse)
    assert response.embeddings == [fake_embedding("a b"), fake_embedding("c")]
    assert response.usage.input_tokens == 3


async def test_stream_with_the_usage_mistral_sends_unasked(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    chunks = [c async for c in execute_stream(mistral, target(fake_upstream), CHAT, client=client)]
    assert "stream_options" not in fake_upstream.last_request.json  # Mistral would answer 422
    assert "".join(d.text for c in chunks for d in c.deltas) == ANSWER
    assert [c.usage.output_tokens for c in chunks if c.usage] == [count_tokens(ANSWER)]
    request = CompletionsRequest("Once upon a time")
    chunks = [c async for c in execute_stream(mistral, target(fake_upstream), request, client=client)]
    assert "".join(d.text for c in chunks for d in c.deltas) == "Fake answer to: Once upon a time"


async def test_mistrals_422_for_an_unknown_field_shows_which(fake_upstream: FakeUpstream,
                                                              client: UpstreamClient) -> None:
    plain = mistral.build_request(target(fake_upstream), CHAT)
    leaky = UpstreamRequest(plain.method, plain.url, plain.headers, {**plain.json, "stream_options": {}})
    error = mistral.map_error(target(fake_upstream), await client.send(leaky))
    assert (error.status, error.code) == (400, "UPSTREAM_BAD_REQUEST")
    assert "stream_options: Extra inputs are not permitted" in error.message


async def test_a_temperature_beyond_range_is_refused_before_the_call(fake_upstream: FakeUpstream,
                                                                      client: UpstreamClient) -> None:
    with pytest.raises(InvalidRequest):
        await execute(mistral, target(fake_upstream), ChatRequest(CHAT.messages, CommonParams(temperature=3)),
                      client=client)
    assert fake_upstream.requests == []


@pytest.mark.parametrize(("fault", "status", "code"), [
    ("429-3", 502, "UPSTREAM_RATE_LIMITED"), ("500", 502, "UPSTREAM_ERROR"), ("400", 400, "UPSTREAM_BAD_REQUEST")])
async def test_faults_map_to_the_gateways_codes(fake_upstream: FakeUpstream, client: UpstreamClient,
                                                fault: str, status: int, code: str) -> None:
    fake_upstream.add_fault(fault)
    with pytest.raises(GatewayError) as caught:
        await execute(mistral, target(fake_upstream), CHAT, client=client)
    assert (caught.value.status, caught.value.code) == (status, code)


async def test_stream_error_after_the_first_chunk(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    fake_upstream.add_fault("stream-error")
    seen = []
    with pytest.raises(UpstreamError, match="mid-stream"):
        async for chunk in execute_stream(mistral, target(fake_upstream), CHAT, client=client):
            seen.append(chunk)
    assert seen


async def test_a_wrong_key_is_an_auth_failure_without_the_key(fake_upstream: FakeUpstream,
                                                               client: UpstreamClient) -> None:
    wrong = "WrongMistr4lKey9Qw2Er7Ty5Ui3Op8"
    with pytest.raises(GatewayError) as caught:
        await execute(mistral, target(fake_upstream, key=wrong), CHAT, client=client)
    assert (caught.value.status, caught.value.code) == (502, "UPSTREAM_AUTH_FAILED")
    assert wrong not in _every_rendering(caught.value)

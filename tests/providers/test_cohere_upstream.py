"""Cohere calls through `execute` against the fake upstream's v2 API over real HTTP."""

from __future__ import annotations

import traceback
from typing import Any

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
from providers.client import UpstreamClient, execute
from providers.cohere import CohereProvider
from tests.fake_upstream import FakeUpstream
from tests.fake_upstream.cohere import TEMPLATE_TOKENS
from tests.fake_upstream.openai import count_tokens, fake_embedding

# The registry line is added separately; the provider holds no state, so one instance will do.
cohere = CohereProvider()

CHAT = ChatRequest([ChatMessage("system", "You are terse."), ChatMessage("user", "What is 2+2?")])


def cohere_target(
    fake: FakeUpstream, *, model: str = "command-r-plus", key: str = FakeUpstream.COHERE_KEY, **config: Any
) -> Target:
    return Target("cohere", model, {"cohere_api_base": fake.cohere_base, **config}, Secrets({"cohere_api_key": key}))


async def test_chat_sends_cohere_v2_wire_format_and_parses_the_answer(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    params = CommonParams(temperature=1.0, top_p=1.0, presence_penalty=0.2, frequency_penalty=0.1)
    response = await execute(cohere, cohere_target(fake_upstream), ChatRequest(CHAT.messages, params), client=client)

    sent = fake_upstream.last_request
    assert (sent.method, sent.path) == ("POST", "/v2/chat")
    assert sent.headers["authorization"] == f"Bearer {FakeUpstream.COHERE_KEY}"
    assert sent.headers["content-type"] == "application/json"
    assert sent.json == {
        "model": "command-r-plus",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is 2+2?"},
        ],
        "temperature": 0.5,
        "p": 0.99,
        "presence_penalty": 0.2,
        "frequency_penalty": 0.1,
    }
    assert isinstance(response, ChatResponse)
    assert response.model == "command-r-plus"
    assert response.id
    assert [c.message.content for c in response.choices] == ["Fake Cohere answer to: What is 2+2?"]
    assert response.choices[0].finish_reason == "stop"
    prompt = count_tokens("You are terse.") + count_tokens("What is 2+2?")
    output = count_tokens("Fake Cohere answer to: What is 2+2?")
    # `usage.tokens` (prompt plus Cohere's template), not `billed_units`.
    assert (response.usage.input_tokens, response.usage.output_tokens) == (prompt + TEMPLATE_TOKENS, output)
    assert response.usage.total_tokens == prompt + TEMPLATE_TOKENS + output


async def test_max_tokens_truncates_with_finish_reason_length(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    request = ChatRequest(CHAT.messages, CommonParams(max_tokens=3, stop=["never"]))
    response = await execute(cohere, cohere_target(fake_upstream), request, client=client)
    assert fake_upstream.last_request.json["max_tokens"] == 3
    assert fake_upstream.last_request.json["stop_sequences"] == ["never"]
    assert isinstance(response, ChatResponse)
    assert response.choices[0].message.content == "Fake Cohere answer"
    assert response.choices[0].finish_reason == "length"
    assert response.usage.output_tokens == 3


async def test_stop_sequence_cuts_the_answer_with_finish_reason_stop(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    request = ChatRequest(CHAT.messages, CommonParams(stop=[" to:"]))
    response = await execute(cohere, cohere_target(fake_upstream), request, client=client)
    assert isinstance(response, ChatResponse)
    assert response.choices[0].message.content == "Fake Cohere answer"
    assert response.choices[0].finish_reason == "stop"


async def test_completions_go_through_v2_chat_as_one_user_message(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    request = CompletionsRequest("Once upon a time", CommonParams(temperature=0.4))
    response = await execute(cohere, cohere_target(fake_upstream, model="command-r"), request, client=client)
    sent = fake_upstream.last_request
    assert sent.path == "/v2/chat"
    assert sent.json == {
        "model": "command-r",
        "messages": [{"role": "user", "content": "Once upon a time"}],
        "temperature": 0.2,
    }
    assert isinstance(response, CompletionsResponse)
    assert response.choices[0].text == "Fake Cohere answer to: Once upon a time"
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.input_tokens == 4 + TEMPLATE_TOKENS


async def test_embeddings_send_input_type_and_come_back_in_input_order(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    target = cohere_target(fake_upstream, model="embed-english-v3.0", cohere_embed_input_type="search_query")
    response = await execute(cohere, target, EmbeddingsRequest(["first text", "second, text"]), client=client)
    sent = fake_upstream.last_request
    assert sent.path == "/v2/embed"
    assert sent.headers["authorization"] == f"Bearer {FakeUpstream.COHERE_KEY}"
    assert sent.json == {
        "model": "embed-english-v3.0",
        "texts": ["first text", "second, text"],
        "input_type": "search_query",
        "embedding_types": ["float"],
    }
    assert isinstance(response, EmbeddingsResponse)
    assert response.embeddings == [fake_embedding("first text"), fake_embedding("second, text")]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (5, 0)


async def test_embeddings_default_to_search_document(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    await execute(cohere, cohere_target(fake_upstream, model="embed-v4.0"), EmbeddingsRequest(["x"]), client=client)
    assert fake_upstream.last_request.json["input_type"] == "search_document"


async def test_several_candidates_are_refused_without_calling_upstream(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        request = ChatRequest(CHAT.messages, CommonParams(n=2))
        await execute(cohere, cohere_target(fake_upstream), request, client=client)
    assert caught.value.status == 400
    assert fake_upstream.requests == []


async def test_vendor_validation_error_becomes_a_400_with_the_vendor_message(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    # Cohere takes at most 5 stop sequences; the adapter leaves that limit to the vendor.
    request = ChatRequest(CHAT.messages, CommonParams(stop=["a", "b", "c", "d", "e", "f"]))
    with pytest.raises(InvalidRequest) as caught:
        await execute(cohere, cohere_target(fake_upstream), request, client=client)
    assert (caught.value.status, caught.value.code) == (400, "UPSTREAM_BAD_REQUEST")
    assert "stop_sequences" in caught.value.message


def _every_rendering(error: BaseException) -> str:
    parts = [
        str(error),
        repr(error),
        *map(str, error.args),
        *map(repr, error.args),
        *getattr(error, "__notes__", []),
        "".join(traceback.format_exception(error)),
    ]
    if isinstance(error, GatewayError):
        parts.append(error.message)
    return "\n".join(parts)


def _fragments(key: str) -> set[str]:
    return {key[i : i + 5] for i in range(len(key) - 4)}


async def test_a_wrong_key_is_an_auth_failure_that_leaks_no_part_of_it(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    wrong_key = "Wq7Hn2Zp9Lm4Xv8Tk3RbYcDf6Gh1Jk5Lo0Pi9Uy3"
    target = cohere_target(fake_upstream, key=wrong_key)
    raw = await client.send(cohere.build_request(target, CHAT))
    assert raw.status == 401
    assert b"invalid api token" in raw.body

    with pytest.raises(GatewayError) as caught:
        await execute(cohere, target, CHAT, client=client)
    error = caught.value
    assert (error.status, error.code) == (502, "UPSTREAM_AUTH_FAILED")
    rendered = _every_rendering(error)
    assert sorted(f for f in _fragments(wrong_key) if f in rendered) == []
    assert error.__cause__ is None and error.__context__ is None


FAULTS = [
    ("400", InvalidRequest, 400, "UPSTREAM_BAD_REQUEST"),
    ("404", InvalidRequest, 400, "UPSTREAM_BAD_REQUEST"),
    ("401", UpstreamError, 502, "UPSTREAM_AUTH_FAILED"),
    ("403", UpstreamError, 502, "UPSTREAM_AUTH_FAILED"),
    ("429-7", UpstreamError, 502, "UPSTREAM_RATE_LIMITED"),
    ("500", UpstreamError, 502, "UPSTREAM_ERROR"),
    ("503", UpstreamError, 502, "UPSTREAM_ERROR"),
    ("garbage", UpstreamBadResponse, 502, "UPSTREAM_BAD_RESPONSE"),
    ("incomplete", UpstreamBadResponse, 502, "UPSTREAM_BAD_RESPONSE"),
    ("close", UpstreamUnavailable, 502, "UPSTREAM_UNAVAILABLE"),
    ("close-mid", UpstreamUnavailable, 502, "UPSTREAM_UNAVAILABLE"),
    ("bad-http", UpstreamUnavailable, 502, "UPSTREAM_UNAVAILABLE"),
    ("sleep-3", UpstreamTimeout, 504, "UPSTREAM_TIMEOUT"),
]


@pytest.mark.parametrize(("fault", "error_class", "status", "code"), FAULTS)
@pytest.mark.parametrize("how", ["magic-model", "queued-chat", "queued-completions", "queued-embeddings"])
async def test_fault_modes_map_to_gateway_errors_without_the_key(
    fake_upstream: FakeUpstream,
    client: UpstreamClient,
    fault: str,
    error_class: type[GatewayError],
    status: int,
    code: str,
    how: str,
) -> None:
    request: StdRequest = CHAT
    target = cohere_target(fake_upstream)
    if how == "magic-model":
        target = cohere_target(fake_upstream, model=f"fault-{fault}")
    else:
        fake_upstream.add_fault(fault)
        if how == "queued-completions":
            request = CompletionsRequest("Hello")
        elif how == "queued-embeddings":
            request = EmbeddingsRequest(["a", "b"])

    with pytest.raises(error_class) as caught:
        await execute(cohere, target, request, client=client, timeout=0.5)

    error = caught.value
    assert type(error) is error_class
    assert (error.status, error.code) == (status, code)
    assert error.retry_after == (7.0 if fault == "429-7" else None)
    assert fake_upstream.requests, "the request must have reached the fake upstream"
    rendered = _every_rendering(error)
    assert sorted(f for f in _fragments(FakeUpstream.COHERE_KEY) if f in rendered) == []
    assert str(fake_upstream.port) not in error.message and "127.0.0.1" not in error.message

"""Anthropic calls through `execute` against the fake upstream over real HTTP."""

from __future__ import annotations

import traceback

import orjson
import pytest

from providers.anthropic import AnthropicProvider
from providers.base import (
    ChatMessage,
    ChatRequest,
    ChatResponse,
    CommonParams,
    CompletionsRequest,
    CompletionsResponse,
    GatewayError,
    InvalidRequest,
    Secrets,
    Target,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamRequest,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from providers.client import UpstreamClient, execute
from tests.fake_upstream import FakeUpstream
from tests.fake_upstream.openai import count_tokens

# The registry line is added separately; the provider holds no state, so an instance is enough.
anthropic = AnthropicProvider()
MODEL = "claude-3-5-haiku-latest"


def anthropic_target(
    fake: FakeUpstream, *, model: str = MODEL, key: str = FakeUpstream.ANTHROPIC_KEY, **config: object
) -> Target:
    return Target(
        "anthropic", model, {"anthropic_api_base": fake.anthropic_base, **config}, Secrets({"anthropic_api_key": key})
    )


CHAT = ChatRequest([ChatMessage("system", "You are terse."), ChatMessage("user", "What is 2+2?")])


async def test_chat_sends_anthropics_wire_format_and_parses_the_answer(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    request = ChatRequest(CHAT.messages, CommonParams(temperature=0.4, top_p=0.9))
    response = await execute(anthropic, anthropic_target(fake_upstream), request, client=client)

    sent = fake_upstream.last_request
    assert (sent.method, sent.path) == ("POST", "/v1/messages")
    assert sent.headers["x-api-key"] == FakeUpstream.ANTHROPIC_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["content-type"] == "application/json"
    assert "authorization" not in sent.headers
    assert sent.json == {
        "model": MODEL,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "What is 2+2?"}],
        "max_tokens": 1024,
        "temperature": 0.2,
        "top_p": 0.9,
    }
    assert isinstance(response, ChatResponse)
    assert response.model == MODEL
    assert response.id is not None and response.id.startswith("msg_")
    assert len(response.choices) == 1
    assert response.choices[0].message.role == "assistant"
    assert response.choices[0].message.content == "Fake answer to: What is 2+2?"
    assert response.choices[0].finish_reason == "stop"
    prompt = count_tokens("You are terse.") + count_tokens("What is 2+2?")
    output = count_tokens("Fake answer to: What is 2+2?")
    assert (response.usage.input_tokens, response.usage.output_tokens) == (prompt, output)
    assert response.usage.total_tokens == prompt + output


async def test_a_multi_turn_chat_reaches_the_strict_upstream_alternating(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    # Two user turns in a row once the middle system message is lifted: the fake, like older API
    # versions, answers 400 to that, so the adapter must have merged them.
    request = ChatRequest(
        [
            ChatMessage("user", "Hi"),
            ChatMessage("assistant", "Hello!"),
            ChatMessage("user", "Tell me a joke."),
            ChatMessage("system", "Keep it clean."),
            ChatMessage("user", "About cats."),
        ]
    )
    response = await execute(anthropic, anthropic_target(fake_upstream), request, client=client)
    assert fake_upstream.last_request.json["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Tell me a joke.\n\nAbout cats."},
    ]
    assert fake_upstream.last_request.json["system"] == "Keep it clean."
    assert isinstance(response, ChatResponse)
    assert response.choices[0].message.content == "Fake answer to: Tell me a joke.\n\nAbout cats."


async def test_max_tokens_truncates_with_finish_reason_length(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    request = ChatRequest(CHAT.messages, CommonParams(max_tokens=3, stop=["never"]))
    response = await execute(anthropic, anthropic_target(fake_upstream), request, client=client)
    assert fake_upstream.last_request.json["max_tokens"] == 3
    assert fake_upstream.last_request.json["stop_sequences"] == ["never"]
    assert isinstance(response, ChatResponse)
    assert response.choices[0].message.content == "Fake answer to"
    assert response.choices[0].finish_reason == "length"
    assert response.usage.output_tokens == 3


async def test_route_default_max_tokens_is_sent_when_the_request_sets_none(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    target = anthropic_target(fake_upstream, anthropic_default_max_tokens=2)
    response = await execute(anthropic, target, CHAT, client=client)
    assert fake_upstream.last_request.json["max_tokens"] == 2
    assert isinstance(response, ChatResponse)
    assert response.choices[0].finish_reason == "length"


async def test_completions_go_to_messages_as_one_user_turn(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    request = CompletionsRequest("Once upon a time", CommonParams(stop=[" a "], temperature=1.0))
    response = await execute(anthropic, anthropic_target(fake_upstream), request, client=client)
    assert fake_upstream.last_request.path == "/v1/messages"
    assert fake_upstream.last_request.json == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Once upon a time"}],
        "max_tokens": 1024,
        "temperature": 0.5,
        "stop_sequences": [" a "],
    }
    assert isinstance(response, CompletionsResponse)
    assert response.choices[0].text == "Fake answer to: Once upon"
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.input_tokens == 4


async def test_requests_anthropic_cannot_serve_are_refused_without_an_upstream_call(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    for request in (
        ChatRequest(CHAT.messages, CommonParams(n=2)),
        ChatRequest(CHAT.messages, CommonParams(presence_penalty=1.0)),
        ChatRequest([ChatMessage("assistant", "Hello"), ChatMessage("user", "Hi")]),
    ):
        with pytest.raises(InvalidRequest) as caught:
            await execute(anthropic, anthropic_target(fake_upstream), request, client=client)
        assert (caught.value.status, caught.value.code) == (400, "INVALID_PARAMETER_VALUE")
    assert fake_upstream.requests == []


async def test_vendor_validation_error_becomes_a_400_with_the_vendor_message(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    # A temperature above OpenAI's 2 halves to above Anthropic's 1: the vendor refuses it.
    request = ChatRequest(CHAT.messages, CommonParams(temperature=3.0))
    with pytest.raises(InvalidRequest) as caught:
        await execute(anthropic, anthropic_target(fake_upstream), request, client=client)
    assert (caught.value.status, caught.value.code) == (400, "UPSTREAM_BAD_REQUEST")
    assert "temperature: Input should be less than or equal to 1" in caught.value.message


async def test_a_missing_version_header_is_the_vendors_400(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    upstream_request = anthropic.build_request(anthropic_target(fake_upstream), CHAT)
    headers = {k: v for k, v in upstream_request.headers.items() if k != "anthropic-version"}
    raw = await client.send(UpstreamRequest("POST", upstream_request.url, headers, upstream_request.json))
    assert raw.status == 400
    error = anthropic.map_error(anthropic_target(fake_upstream), raw)
    assert (error.status, error.code) == (400, "UPSTREAM_BAD_REQUEST")
    assert "anthropic-version: header is required" in error.message


@pytest.mark.parametrize(
    ("fault", "error_type", "status", "code"),
    [
        ("400", InvalidRequest, 400, "UPSTREAM_BAD_REQUEST"),
        ("404", InvalidRequest, 400, "UPSTREAM_BAD_REQUEST"),
        ("403", UpstreamError, 502, "UPSTREAM_AUTH_FAILED"),
        ("429-7", UpstreamError, 502, "UPSTREAM_RATE_LIMITED"),
        ("500", UpstreamError, 502, "UPSTREAM_ERROR"),
        ("529", UpstreamError, 502, "UPSTREAM_ERROR"),
        ("garbage", UpstreamBadResponse, 502, "UPSTREAM_BAD_RESPONSE"),
        ("incomplete", UpstreamBadResponse, 502, "UPSTREAM_BAD_RESPONSE"),
        ("close", UpstreamUnavailable, 502, "UPSTREAM_UNAVAILABLE"),
        ("close-mid", UpstreamUnavailable, 502, "UPSTREAM_UNAVAILABLE"),
        ("bad-http", UpstreamUnavailable, 502, "UPSTREAM_UNAVAILABLE"),
    ],
)
async def test_faults_map_to_the_right_gateway_errors(
    fake_upstream: FakeUpstream,
    client: UpstreamClient,
    fault: str,
    error_type: type[GatewayError],
    status: int,
    code: str,
) -> None:
    fake_upstream.add_fault(fault)
    with pytest.raises(error_type) as caught:
        await execute(anthropic, anthropic_target(fake_upstream), CHAT, client=client)
    assert (caught.value.status, caught.value.code) == (status, code)
    if fault.startswith("429"):
        assert caught.value.retry_after == 7.0
    if fault == "529":
        assert "529" in caught.value.message and "Overloaded" in caught.value.message


async def test_a_magic_model_name_plays_a_fault_and_a_slow_vendor_times_out(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    with pytest.raises(UpstreamError) as caught:
        await execute(anthropic, anthropic_target(fake_upstream, model="fault-529"), CHAT, client=client)
    assert caught.value.code == "UPSTREAM_ERROR"
    with pytest.raises(UpstreamTimeout) as timed_out:
        await execute(
            anthropic, anthropic_target(fake_upstream, model="fault-sleep-2"), CHAT, client=client, timeout=0.3
        )
    assert (timed_out.value.status, timed_out.value.code) == (504, "UPSTREAM_TIMEOUT")


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


@pytest.mark.parametrize("fault", [None, "400", "429", "529", "close"])
async def test_the_key_never_reaches_an_error(
    fake_upstream: FakeUpstream, client: UpstreamClient, fault: str | None
) -> None:
    # With no fault the wrong key gets the vendor's 401; with one, the fault answers first.
    wrong_key = "sk-ant-api03-Wq7Hn2Zp9Lm4Xv8Tk3RbYc"
    if fault:
        fake_upstream.add_fault(fault)
    with pytest.raises(GatewayError) as caught:
        await execute(anthropic, anthropic_target(fake_upstream, key=wrong_key), CHAT, client=client)
    error = caught.value
    if fault is None:
        assert (error.status, error.code) == (502, "UPSTREAM_AUTH_FAILED")
    assert fake_upstream.last_request.headers["x-api-key"] == wrong_key
    rendered = _every_rendering(error)
    secret_part = wrong_key[len("sk-ant-api03-") :]
    fragments = {secret_part[i : i + 4] for i in range(len(secret_part) - 3)}
    leaked = sorted(f for f in fragments if f in rendered)
    assert leaked == [], f"key fragments leaked: {leaked}"
    assert error.__cause__ is None and error.__context__ is None


# ---------------------------------------------------------------- the fake is as strict as Anthropic


def _raw(fake: FakeUpstream, body: dict[str, object], *, key: str | None = FakeUpstream.ANTHROPIC_KEY,
         version: str | None = "2023-06-01") -> UpstreamRequest:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["x-api-key"] = key
    if version is not None:
        headers["anthropic-version"] = version
    return UpstreamRequest("POST", f"{fake.anthropic_base}/v1/messages", headers, body)


USER = {"role": "user", "content": "Hi"}
ASSISTANT = {"role": "assistant", "content": "Hello"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"model": MODEL, "messages": [USER]}, "max_tokens: Field required"),
        ({"max_tokens": 5, "messages": [USER]}, "model: Field required"),
        ({"model": MODEL, "max_tokens": 5}, "messages: Field required"),
        ({"model": MODEL, "max_tokens": 5, "messages": [USER, USER]}, "roles must alternate"),
        ({"model": MODEL, "max_tokens": 5, "messages": [ASSISTANT, USER]}, 'first message must use the "user"'),
        ({"model": MODEL, "max_tokens": 5, "messages": [{"role": "system", "content": "x"}, USER]},
         'Unexpected role "system"'),
        ({"model": MODEL, "max_tokens": 5, "messages": [USER], "n": 2}, "n: Extra inputs are not permitted"),
        ({"model": MODEL, "max_tokens": 5, "messages": [USER], "temperature": 1.5}, "less than or equal to 1"),
    ],
)
async def test_the_fake_refuses_what_anthropic_refuses_in_anthropics_error_shape(
    fake_upstream: FakeUpstream, client: UpstreamClient, body: dict[str, object], message: str
) -> None:
    raw = await client.send(_raw(fake_upstream, body))
    assert raw.status == 400
    data = orjson.loads(raw.body)
    assert data["type"] == "error" and data["error"]["type"] == "invalid_request_error"
    assert message in data["error"]["message"]
    assert data["request_id"].startswith("req_") and raw.headers["request-id"] == data["request_id"]


async def test_the_fake_checks_key_then_version_header(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    body: dict[str, object] = {"model": MODEL, "max_tokens": 3, "messages": [USER, ASSISTANT, USER]}
    missing = await client.send(_raw(fake_upstream, body, key=None))
    wrong = await client.send(_raw(fake_upstream, body, key="sk-ant-wrong"))
    unversioned = await client.send(_raw(fake_upstream, body, version=None))
    ok = await client.send(_raw(fake_upstream, body))
    assert [r.status for r in (missing, wrong, unversioned, ok)] == [401, 401, 400, 200]
    assert orjson.loads(wrong.body)["error"] == {"type": "authentication_error", "message": "invalid x-api-key"}
    assert "anthropic-version: header is required" in orjson.loads(unversioned.body)["error"]["message"]
    answer = orjson.loads(ok.body)
    assert (answer["type"], answer["role"], answer["stop_reason"]) == ("message", "assistant", "max_tokens")
    assert answer["content"] == [{"type": "text", "text": "Fake answer to"}]
    assert answer["usage"] == {"input_tokens": 3, "output_tokens": 3}

"""OpenAI, Azure and azuread calls through `execute` against the fake upstream over real HTTP."""

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
    Target,
    UpstreamError,
)
from providers.client import UpstreamClient, execute
from providers.registry import get_provider
from tests.fake_upstream import FakeUpstream
from tests.fake_upstream.openai import count_tokens, fake_embedding, masked

openai = get_provider("openai")


def openai_target(
    fake: FakeUpstream,
    *,
    model: str = "gpt-4o-mini",
    key: str | None = FakeUpstream.OPENAI_KEY,
    **config: Any,
) -> Target:
    secrets = Secrets({"openai_api_key": key} if key is not None else {})
    return Target("openai", model, {"openai_api_base": fake.openai_base, **config}, secrets)


def azure_target(
    fake: FakeUpstream,
    *,
    api_type: str = "azure",
    deployment: str = "gpt4o-prod",
    key: str = FakeUpstream.AZURE_KEY,
) -> Target:
    config = {
        "openai_api_type": api_type,
        "openai_api_base": fake.url,
        "openai_deployment_name": deployment,
        "openai_api_version": "2024-02-01",
    }
    return Target("openai", "gpt-4o", config, Secrets({"openai_api_key": key}))


CHAT = ChatRequest([ChatMessage("system", "You are terse."), ChatMessage("user", "What is 2+2?")])


async def test_openai_chat_sends_the_openai_wire_format_and_parses_the_answer(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    request = ChatRequest(CHAT.messages, CommonParams(temperature=0.2, n=2))
    target = openai_target(fake_upstream, openai_organization="org-acme")
    response = await execute(openai, target, request, client=client)

    sent = fake_upstream.last_request
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.headers["authorization"] == f"Bearer {FakeUpstream.OPENAI_KEY}"
    assert sent.headers["openai-organization"] == "org-acme"
    assert sent.headers["content-type"] == "application/json"
    assert sent.json == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is 2+2?"},
        ],
        "temperature": 0.2,
        "n": 2,
    }
    assert isinstance(response, ChatResponse)
    assert response.model == "gpt-4o-mini"
    assert response.id is not None and response.id.startswith("chatcmpl-")
    assert [c.message.content for c in response.choices] == ["Fake answer to: What is 2+2?"] * 2
    assert [c.finish_reason for c in response.choices] == ["stop", "stop"]
    prompt = count_tokens("You are terse.") + count_tokens("What is 2+2?")
    output = 2 * count_tokens("Fake answer to: What is 2+2?")
    assert (response.usage.input_tokens, response.usage.output_tokens) == (prompt, output)
    assert response.usage.total_tokens == prompt + output


async def test_openai_chat_max_tokens_truncates_with_finish_reason_length(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    request = ChatRequest(CHAT.messages, CommonParams(max_tokens=3, stop=["never"]))
    response = await execute(openai, openai_target(fake_upstream), request, client=client)
    assert fake_upstream.last_request.json["max_tokens"] == 3
    assert fake_upstream.last_request.json["stop"] == ["never"]
    assert isinstance(response, ChatResponse)
    assert response.choices[0].message.content == "Fake answer to"
    assert response.choices[0].finish_reason == "length"
    assert response.usage.output_tokens == 3


async def test_openai_completions(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    target = openai_target(fake_upstream, model="gpt-3.5-turbo-instruct")
    response = await execute(openai, target, CompletionsRequest("Once upon a time"), client=client)
    assert fake_upstream.last_request.path == "/v1/completions"
    assert fake_upstream.last_request.json == {
        "model": "gpt-3.5-turbo-instruct",
        "prompt": "Once upon a time",
    }
    assert isinstance(response, CompletionsResponse)
    assert response.choices[0].text == "Fake completion of: Once upon a time"
    assert response.usage.input_tokens == 4


async def test_openai_embeddings_come_back_in_input_order(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    target = openai_target(fake_upstream, model="text-embedding-3-small")
    response = await execute(openai, target, EmbeddingsRequest(["first text", "second, text"]), client=client)
    assert fake_upstream.last_request.json == {
        "model": "text-embedding-3-small",
        "input": ["first text", "second, text"],
    }
    assert isinstance(response, EmbeddingsResponse)
    # The fake answers data items in reverse order: the adapter must sort by index.
    assert response.embeddings == [fake_embedding("first text"), fake_embedding("second, text")]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (5, 0)


@pytest.mark.parametrize(
    ("api_type", "auth_header", "credential"),
    [
        ("azure", "api-key", FakeUpstream.AZURE_KEY),
        ("azuread", "authorization", f"Bearer {FakeUpstream.AZUREAD_TOKEN}"),
    ],
)
async def test_azure_chat_uses_deployment_url_api_version_and_its_auth(
    fake_upstream: FakeUpstream, client: UpstreamClient, api_type: str, auth_header: str, credential: str
) -> None:
    key = FakeUpstream.AZURE_KEY if api_type == "azure" else FakeUpstream.AZUREAD_TOKEN
    response = await execute(
        openai, azure_target(fake_upstream, api_type=api_type, key=key), CHAT, client=client
    )
    sent = fake_upstream.last_request
    assert sent.path == "/openai/deployments/gpt4o-prod/chat/completions"
    assert sent.query == {"api-version": "2024-02-01"}
    assert sent.headers[auth_header] == credential
    other = "authorization" if auth_header == "api-key" else "api-key"
    assert other not in sent.headers
    assert "model" not in sent.json
    assert isinstance(response, ChatResponse)
    assert response.choices[0].message.content == "Fake answer to: What is 2+2?"


async def test_azure_embeddings(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    response = await execute(
        openai, azure_target(fake_upstream, deployment="emb"), EmbeddingsRequest(["a b"]), client=client
    )
    assert fake_upstream.last_request.path == "/openai/deployments/emb/embeddings"
    assert isinstance(response, EmbeddingsResponse)
    assert response.embeddings == [fake_embedding("a b")]


async def test_openai_compatible_server_without_key_gets_no_authorization_header(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    # The fake insists on a key (as OpenAI does); what matters is that none was invented.
    with pytest.raises(UpstreamError):
        await execute(openai, openai_target(fake_upstream, key=None), CHAT, client=client)
    assert "authorization" not in fake_upstream.last_request.headers


async def test_vendor_validation_error_becomes_a_400_with_the_vendor_message(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    request = ChatRequest(CHAT.messages, CommonParams(temperature=3.5))
    with pytest.raises(InvalidRequest) as caught:
        await execute(openai, openai_target(fake_upstream), request, client=client)
    assert (caught.value.status, caught.value.code) == (400, "UPSTREAM_BAD_REQUEST")
    assert "Invalid 'temperature'" in caught.value.message


async def test_azure_wrong_key_is_an_auth_failure(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    with pytest.raises(UpstreamError) as caught:
        await execute(openai, azure_target(fake_upstream, key="0" * 32), CHAT, client=client)
    assert (caught.value.status, caught.value.code) == (502, "UPSTREAM_AUTH_FAILED")


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


async def test_a_401_echoing_the_key_leaks_no_part_of_it(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    wrong_key = "sk-Wq7Hn2Zp9Lm4Xv8Tk3RbYc"
    target = openai_target(fake_upstream, key=wrong_key)
    # The vendor does echo the key, partially masked, as OpenAI does...
    raw = await client.send(openai.build_request(target, CHAT))
    assert raw.status == 401
    assert masked(wrong_key).encode() in raw.body
    assert masked(wrong_key).startswith(wrong_key[:8]) and masked(wrong_key).endswith(wrong_key[-4:])

    # ...and none of it reaches the error a caller (or a log line) sees.
    with pytest.raises(GatewayError) as caught:
        await execute(openai, target, CHAT, client=client)
    error = caught.value
    assert (error.status, error.code) == (502, "UPSTREAM_AUTH_FAILED")
    rendered = _every_rendering(error)
    secret_part = wrong_key[3:]
    fragments = {secret_part[i : i + 4] for i in range(len(secret_part) - 3)}
    leaked = sorted(f for f in fragments if f in rendered)
    assert leaked == [], f"key fragments leaked: {leaked}"
    assert error.__cause__ is None and error.__context__ is None

"""Databricks Model Serving through `execute` and `execute_stream` against the fake upstream."""

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
    Secrets,
    Target,
    UpstreamError,
    UpstreamUnavailable,
)
from providers.client import UpstreamClient, execute, execute_stream
from providers.databricks import DatabricksModelServingProvider, DatabricksProvider
from providers.tokens import count_text_tokens
from tests.fake_upstream import FakeUpstream
from tests.fake_upstream.openai import count_tokens, fake_embedding
from tests.providers.test_openai_upstream import _every_rendering

serving = DatabricksModelServingProvider()
CHAT = ChatRequest([ChatMessage("user", "What is 2+2?")])
SEED_PROMPT = "Classify the following product review as positive or negative: 'Great value!'"


def target(fake: FakeUpstream, model: str, *, token: str = FakeUpstream.DATABRICKS_TOKEN,
           provider: str = "databricks-model-serving") -> Target:
    return Target(provider, model, {"databricks_workspace_url": fake.databricks_url},
                  Secrets({"databricks_api_token": token}))


async def test_the_seeds_mpt_7b_completions_route(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    request = CompletionsRequest(SEED_PROMPT, CommonParams(temperature=0.2, max_tokens=50, n=2))
    response = await execute(serving, target(fake_upstream, "mpt-7b-instruct"), request, client=client)
    sent = fake_upstream.last_request
    assert sent.path == "/serving-endpoints/mpt-7b-instruct/invocations"
    assert sent.headers["authorization"] == f"Bearer {FakeUpstream.DATABRICKS_TOKEN}"
    assert sent.json == {"prompt": SEED_PROMPT, "temperature": 0.2, "max_tokens": 50, "n": 2}
    assert isinstance(response, CompletionsResponse)
    assert [c.text for c in response.choices] == [f"Fake completion of: {SEED_PROMPT}"] * 2
    assert response.model == "mpt-7b-instruct" and response.usage.input_tokens == count_tokens(SEED_PROMPT)


async def test_chat_and_embeddings_under_the_databricks_name(fake_upstream: FakeUpstream,
                                                            client: UpstreamClient) -> None:
    provider = DatabricksProvider()
    chat = await execute(provider, target(fake_upstream, "databricks-llama", provider="databricks"), CHAT,
                         client=client)
    assert isinstance(chat, ChatResponse) and chat.choices[0].message.content == "Fake answer to: What is 2+2?"
    assert "model" not in fake_upstream.last_request.json
    emb = await execute(provider, target(fake_upstream, "databricks-bge-large-en", provider="databricks"),
                        EmbeddingsRequest(["first", "second"]), client=client)
    assert fake_upstream.last_request.json == {"input": ["first", "second"]}
    assert isinstance(emb, EmbeddingsResponse) and emb.embeddings == [fake_embedding("first"), fake_embedding("second")]


async def test_a_custom_model_without_usage_is_counted(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    response = await execute(serving, target(fake_upstream, "custom-mpt"), CompletionsRequest("Hello"), client=client)
    assert response.usage.estimated is True
    assert response.usage.input_tokens == count_text_tokens("Hello")


async def test_chat_and_completions_stream(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    chunks = [c async for c in execute_stream(serving, target(fake_upstream, "databricks-llama"), CHAT, client=client)]
    assert fake_upstream.last_request.json == {"messages": [{"role": "user", "content": "What is 2+2?"}],
                                               "stream": True}
    assert "".join(d.text for c in chunks for d in c.deltas) == "Fake answer to: What is 2+2?"
    request = CompletionsRequest("Once upon a time")
    chunks = [c async for c in execute_stream(serving, target(fake_upstream, "mpt-7b-instruct"), request,
                                              client=client)]
    assert "".join(d.text for c in chunks for d in c.deltas) == "Fake completion of: Once upon a time"


async def test_stream_faults(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    fake_upstream.add_fault("stream-error")
    with pytest.raises(UpstreamError, match="mid-stream"):
        [c async for c in execute_stream(serving, target(fake_upstream, "databricks-llama"), CHAT, client=client)]
    fake_upstream.add_fault("stream-cut")
    with pytest.raises(UpstreamUnavailable):
        [c async for c in execute_stream(serving, target(fake_upstream, "databricks-llama"), CHAT, client=client)]


async def test_an_unknown_endpoint_is_a_bad_request_with_databricks_message(fake_upstream: FakeUpstream,
                                                                          client: UpstreamClient) -> None:
    with pytest.raises(GatewayError) as caught:
        await execute(serving, target(fake_upstream, "missing-endpoint"), CHAT, client=client)
    assert (caught.value.status, caught.value.code) == (400, "UPSTREAM_BAD_REQUEST")
    assert "does not exist" in caught.value.message


@pytest.mark.parametrize(("fault", "status", "code"), [
    ("429-5", 502, "UPSTREAM_RATE_LIMITED"), ("500", 502, "UPSTREAM_ERROR"), ("503", 502, "UPSTREAM_ERROR"),
    ("400", 400, "UPSTREAM_BAD_REQUEST")])
async def test_faults_map_to_the_gateways_codes(fake_upstream: FakeUpstream, client: UpstreamClient,
                                                fault: str, status: int, code: str) -> None:
    fake_upstream.add_fault(fault)
    with pytest.raises(GatewayError) as caught:
        await execute(serving, target(fake_upstream, "databricks-llama"), CHAT, client=client)
    assert (caught.value.status, caught.value.code) == (status, code)


async def test_a_wrong_token_is_an_auth_failure_without_the_token(fake_upstream: FakeUpstream,
                                                                   client: UpstreamClient) -> None:
    wrong = "dapiWRONG0123456789abcdef01234567"
    with pytest.raises(GatewayError) as caught:
        await execute(serving, target(fake_upstream, "databricks-llama", token=wrong), CHAT, client=client)
    assert (caught.value.status, caught.value.code) == (502, "UPSTREAM_AUTH_FAILED")
    assert wrong not in _every_rendering(caught.value)

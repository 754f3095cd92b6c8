"""Groq, DeepSeek, xAI, OpenRouter, TogetherAI, Ollama and vLLM through `execute` and
`execute_stream` against the fake upstream over real HTTP."""

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
    UpstreamBadResponse,
    UpstreamError,
    UpstreamUnavailable,
)
from providers.client import UpstreamClient, execute, execute_stream
from providers.openai_compatible import (
    DeepSeekProvider,
    GroqProvider,
    OllamaProvider,
    OpenAICompatibleProvider,
    OpenRouterProvider,
    TogetherAIProvider,
    VLLMProvider,
    XAIProvider,
)
from providers.streaming import StreamChunk
from providers.tokens import count_text_tokens
from tests.fake_upstream import FakeUpstream
from tests.fake_upstream.openai import count_tokens, fake_embedding
from tests.providers.test_openai_upstream import _every_rendering

PROVIDERS: dict[str, OpenAICompatibleProvider] = {
    p.name: p
    for p in (GroqProvider(), DeepSeekProvider(), XAIProvider(), OpenRouterProvider(), TogetherAIProvider(),
              OllamaProvider(), VLLMProvider())
}
KEYS: dict[str, str | None] = {
    "groq": FakeUpstream.GROQ_KEY,
    "deepseek": FakeUpstream.DEEPSEEK_KEY,
    "xai": FakeUpstream.XAI_KEY,
    "openrouter": FakeUpstream.OPENROUTER_KEY,
    "togetherai": FakeUpstream.TOGETHERAI_KEY,
    "ollama": None,
    "vllm": FakeUpstream.VLLM_KEY,
}
ALL = sorted(PROVIDERS)
WITH_EMBEDDINGS = ["ollama", "openrouter", "togetherai", "vllm", "xai"]
CHAT = ChatRequest([ChatMessage("system", "You are terse."), ChatMessage("user", "What is 2+2?")])
ANSWER = "Fake answer to: What is 2+2?"


def target(fake: FakeUpstream, name: str, *, model: str = "m-1", key: str | None = "default") -> Target:
    provider = PROVIDERS[name]
    secret = KEYS[name] if key == "default" else key
    return Target(name, model, {provider.base_field: fake.compatible_base(name)},
                  Secrets({provider.key_field: secret} if secret else {}))


async def collect(fake: FakeUpstream, name: str, request: ChatRequest | CompletionsRequest,
                  client: UpstreamClient, **kwargs: str) -> list[StreamChunk]:
    return [c async for c in execute_stream(PROVIDERS[name], target(fake, name, **kwargs), request, client=client)]


def joined(chunks: list[StreamChunk], index: int = 0) -> str:
    return "".join(d.text for c in chunks for d in c.deltas if d.index == index)


@pytest.mark.parametrize("name", ALL)
async def test_chat_reaches_the_vendors_path_with_its_key_and_reads_its_usage(
    fake_upstream: FakeUpstream, client: UpstreamClient, name: str
) -> None:
    response = await execute(PROVIDERS[name], target(fake_upstream, name), CHAT, client=client)
    sent = fake_upstream.last_request
    assert sent.path == f"{fake_upstream.compatible_base(name).removeprefix(fake_upstream.url)}/chat/completions"
    if KEYS[name]:
        assert sent.headers["authorization"] == f"Bearer {KEYS[name]}"
    else:
        assert "authorization" not in sent.headers
    assert sent.json["model"] == "m-1" and sent.json["messages"][1] == {"role": "user", "content": "What is 2+2?"}
    assert isinstance(response, ChatResponse)
    assert response.choices[0].message.content == ANSWER
    assert response.choices[0].finish_reason == "stop"  # TogetherAI's "eos" included
    prompt = count_tokens("You are terse.") + count_tokens("What is 2+2?")
    assert (response.usage.input_tokens, response.usage.output_tokens) == (prompt, count_tokens(ANSWER))
    assert response.usage.estimated is False


@pytest.mark.parametrize(("name", "path", "body_key"), [
    ("groq", "/groq/openai/v1/chat/completions", "messages"),
    ("deepseek", "/deepseek/beta/completions", "prompt"),
    ("xai", "/xai/v1/completions", "prompt"),
    ("openrouter", "/openrouter/api/v1/completions", "prompt"),
    ("togetherai", "/together/v1/completions", "prompt"),
    ("ollama", "/ollama/v1/completions", "prompt"),
    ("vllm", "/vllm/v1/completions", "prompt"),
])
async def test_completions_use_the_vendors_completions_api_or_its_chat(
    fake_upstream: FakeUpstream, client: UpstreamClient, name: str, path: str, body_key: str
) -> None:
    request = CompletionsRequest("Once upon a time", CommonParams(max_tokens=50))
    response = await execute(PROVIDERS[name], target(fake_upstream, name), request, client=client)
    assert fake_upstream.last_request.path == path
    assert body_key in fake_upstream.last_request.json
    assert isinstance(response, CompletionsResponse)
    expected = "Fake answer to: Once upon a time" if name == "groq" else "Fake completion of: Once upon a time"
    assert response.choices[0].text == expected
    assert response.usage.input_tokens == 4


@pytest.mark.parametrize("name", WITH_EMBEDDINGS)
async def test_embeddings_come_back_in_input_order(
    fake_upstream: FakeUpstream, client: UpstreamClient, name: str
) -> None:
    request = EmbeddingsRequest(["first text", "second, text"])
    response = await execute(PROVIDERS[name], target(fake_upstream, name), request, client=client)
    assert fake_upstream.last_request.json == {"model": "m-1", "input": ["first text", "second, text"]}
    assert isinstance(response, EmbeddingsResponse)
    assert response.embeddings == [fake_embedding("first text"), fake_embedding("second, text")]
    if name == "togetherai":  # Together's embeddings answer has no usage: counted, marked estimated
        expected = count_text_tokens("first text") + count_text_tokens("second, text")
        assert (response.usage.input_tokens, response.usage.estimated) == (expected, True)
    else:
        assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.estimated) == (5, 0, False)


@pytest.mark.parametrize("name", ["xai", "togetherai", "vllm"])
async def test_n_candidates_where_the_vendor_offers_n(
    fake_upstream: FakeUpstream, client: UpstreamClient, name: str
) -> None:
    request = ChatRequest(CHAT.messages, CommonParams(n=2))
    response = await execute(PROVIDERS[name], target(fake_upstream, name), request, client=client)
    assert [c.message.content for c in response.choices] == [ANSWER, ANSWER]  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["groq", "deepseek", "openrouter", "ollama"])
async def test_n_above_one_is_refused_before_calling_a_vendor_without_n(
    fake_upstream: FakeUpstream, client: UpstreamClient, name: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await execute(PROVIDERS[name], target(fake_upstream, name), ChatRequest(CHAT.messages, CommonParams(n=2)),
                      client=client)
    assert caught.value.status == 400
    assert fake_upstream.requests == []


async def test_the_groq_fake_refuses_n_as_groq_does(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    # What the adapter's own check saves the caller from: Groq's 400, mapped.
    request = XAIProvider().build_request(target(fake_upstream, "groq"), ChatRequest(CHAT.messages, CommonParams(n=2)))
    raw = await client.send(request)
    error = PROVIDERS["groq"].map_error(target(fake_upstream, "groq"), raw)
    assert (raw.status, error.code) == (400, "UPSTREAM_BAD_REQUEST") and "'n'" in error.message


async def test_ollama_sends_no_authorization_even_with_mlflows_placeholder_key(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    response = await execute(PROVIDERS["ollama"], target(fake_upstream, "ollama", key="ollama"), CHAT, client=client)
    assert "authorization" not in fake_upstream.last_request.headers
    assert isinstance(response, ChatResponse)


async def test_vllm_without_a_key_sends_none_and_a_server_that_wants_one_is_an_auth_failure(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    with pytest.raises(UpstreamError) as caught:
        await execute(PROVIDERS["vllm"], target(fake_upstream, "vllm", key=None), CHAT, client=client)
    assert "authorization" not in fake_upstream.last_request.headers
    assert (caught.value.status, caught.value.code) == (502, "UPSTREAM_AUTH_FAILED")


# ---------------------------------------------------------------- streaming


@pytest.mark.parametrize("name", ALL)
async def test_chat_stream_equals_the_plain_answer_and_carries_the_vendors_usage(
    fake_upstream: FakeUpstream, client: UpstreamClient, name: str
) -> None:
    chunks = await collect(fake_upstream, name, CHAT, client)
    sent = fake_upstream.last_request.json
    assert sent["stream"] is True
    assert ("stream_options" in sent) is (name != "togetherai")
    assert joined(chunks) == ANSWER
    assert len([c for c in chunks if any(d.text for d in c.deltas)]) > 3
    assert [d.finish_reason for c in chunks for d in c.deltas if d.finish_reason] == ["stop"]
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1 and usage[0].output_tokens == count_tokens(ANSWER)


@pytest.mark.parametrize(("name", "text"), [
    ("groq", "Fake answer to: Once upon a time"),
    ("deepseek", "Fake completion of: Once upon a time"),
    ("togetherai", "Fake completion of: Once upon a time"),
])
async def test_completions_stream(fake_upstream: FakeUpstream, client: UpstreamClient, name: str, text: str) -> None:
    chunks = await collect(fake_upstream, name, CompletionsRequest("Once upon a time", CommonParams(max_tokens=50)),
                           client)
    assert joined(chunks) == text


@pytest.mark.parametrize("name", ["groq", "openrouter", "ollama"])
async def test_vendor_error_mid_stream_raises_after_the_first_chunks(
    fake_upstream: FakeUpstream, client: UpstreamClient, name: str
) -> None:
    fake_upstream.add_fault("stream-error")
    seen: list[StreamChunk] = []
    with pytest.raises(UpstreamError) as caught:
        async for chunk in execute_stream(PROVIDERS[name], target(fake_upstream, name), CHAT, client=client):
            seen.append(chunk)
    assert seen and "mid-stream" in caught.value.message


async def test_connection_cut_mid_stream_is_unavailable(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    fake_upstream.add_fault("stream-cut")
    with pytest.raises(UpstreamUnavailable):
        await collect(fake_upstream, "xai", CHAT, client)


async def test_error_status_before_a_stream_maps_like_a_plain_call(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    fake_upstream.add_fault("429-4")
    with pytest.raises(UpstreamError) as caught:
        await collect(fake_upstream, "deepseek", CHAT, client)
    assert (caught.value.code, caught.value.retry_after) == ("UPSTREAM_RATE_LIMITED", 4)


# ---------------------------------------------------------------- faults and errors


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(("fault", "status", "code"), [
    ("429-2", 502, "UPSTREAM_RATE_LIMITED"),
    ("500", 502, "UPSTREAM_ERROR"),
    ("503", 502, "UPSTREAM_ERROR"),
    ("400", 400, "UPSTREAM_BAD_REQUEST"),
    ("404", 400, "UPSTREAM_BAD_REQUEST"),
])
async def test_vendor_errors_map_to_the_gateways_codes(
    fake_upstream: FakeUpstream, client: UpstreamClient, name: str, fault: str, status: int, code: str
) -> None:
    fake_upstream.add_fault(fault)
    with pytest.raises(GatewayError) as caught:
        await execute(PROVIDERS[name], target(fake_upstream, name), CHAT, client=client)
    assert (caught.value.status, caught.value.code) == (status, code)
    if fault.startswith("429"):
        assert caught.value.retry_after == 2
    if fault == "400":  # the vendor's own message, whichever body shape it uses
        assert "fake fault 400" in caught.value.message


@pytest.mark.parametrize("name", ["groq", "togetherai"])
async def test_an_unparseable_answer_is_a_bad_response(
    fake_upstream: FakeUpstream, client: UpstreamClient, name: str
) -> None:
    fake_upstream.add_fault("garbage")
    with pytest.raises(UpstreamBadResponse):
        await execute(PROVIDERS[name], target(fake_upstream, name), CHAT, client=client)


@pytest.mark.parametrize("name", ["groq", "deepseek", "xai", "openrouter", "togetherai", "vllm"])
async def test_a_wrong_key_is_an_auth_failure_that_leaks_no_part_of_it(
    fake_upstream: FakeUpstream, client: UpstreamClient, name: str
) -> None:
    wrong = "sk-Wq7Hn2Zp9Lm4Xv8Tk3RbYcQe"
    with pytest.raises(GatewayError) as caught:
        await execute(PROVIDERS[name], target(fake_upstream, name, key=wrong), CHAT, client=client)
    error = caught.value
    assert (error.status, error.code) == (502, "UPSTREAM_AUTH_FAILED")
    rendered = _every_rendering(error)
    secret_part = wrong[3:]
    leaked = sorted(f for f in {secret_part[i : i + 4] for i in range(len(secret_part) - 3)} if f in rendered)
    assert leaked == []
    assert error.__cause__ is None and error.__context__ is None


async def test_a_route_type_the_vendor_lacks_answers_404_upstream(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    # validate_config refuses it at route creation; were it ever sent, Groq has no /embeddings.
    request = XAIProvider().build_request(target(fake_upstream, "groq"), EmbeddingsRequest(["x"]))
    raw = await client.send(request)
    assert raw.status == 404

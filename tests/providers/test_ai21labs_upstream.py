"""AI21 calls (Jamba chat, J2 complete) through `execute` and `execute_stream` against the fake upstream."""

from __future__ import annotations

import orjson
import pytest

from providers.ai21labs import AI21LabsProvider
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
from providers.client import UpstreamClient, execute, execute_stream
from tests.fake_upstream import FakeUpstream
from tests.fake_upstream.ai21labs import TEMPLATE_TOKENS
from tests.fake_upstream.openai import count_tokens
from tests.providers._vendor_checks import collect, finish_reasons, joined, leaked_fragments, text_chunks

ai21 = AI21LabsProvider()
CHAT = ChatRequest([ChatMessage("system", "Be brief."), ChatMessage("user", "What is Jamba?")])


def ai21_target(fake: FakeUpstream, *, model: str = "jamba-mini", key: str = FakeUpstream.AI21LABS_KEY) -> Target:
    return Target(ai21.name, model, {"ai21labs_api_base": fake.ai21labs_base}, Secrets({"ai21labs_api_key": key}))


async def test_chat_uses_the_jamba_api_and_its_usage(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    request = ChatRequest(CHAT.messages, CommonParams(temperature=0.4, max_tokens=40))
    response = await execute(ai21, ai21_target(fake_upstream), request, client=client)
    sent = fake_upstream.last_request
    assert (sent.method, sent.path) == ("POST", "/studio/v1/chat/completions")
    assert sent.headers["authorization"] == f"Bearer {FakeUpstream.AI21LABS_KEY}"
    assert sent.json == {"model": "jamba-mini", "messages": [{"role": "system", "content": "Be brief."},
                                                              {"role": "user", "content": "What is Jamba?"}],
                         "max_tokens": 40, "temperature": 0.4}
    assert isinstance(response, ChatResponse)
    assert response.choices[0].message.content == "Fake Jamba answer to: What is Jamba?"
    assert response.choices[0].finish_reason == "stop"
    prompt = count_tokens("Be brief.") + count_tokens("What is Jamba?") + 2 * TEMPLATE_TOKENS
    assert (response.usage.input_tokens, response.usage.output_tokens) == (
        prompt, count_tokens("Fake Jamba answer to: What is Jamba?"))
    assert not response.usage.estimated


async def test_jamba_answers_several_candidates_and_cuts_at_max_tokens(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    request = CompletionsRequest("Once upon", CommonParams(n=2, max_tokens=2))
    response = await execute(ai21, ai21_target(fake_upstream, model="jamba-large"), request, client=client)
    assert fake_upstream.last_request.json["messages"] == [{"role": "user", "content": "Once upon"}]
    assert isinstance(response, CompletionsResponse)
    assert [(c.text, c.finish_reason) for c in response.choices] == [("Fake Jamba", "length")] * 2
    assert response.usage.output_tokens == 4


async def test_completions_on_j2_use_mlflows_complete_api(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    request = CompletionsRequest("Life is like", CommonParams(temperature=0.0, max_tokens=30, stop=["like"], n=2))
    response = await execute(ai21, ai21_target(fake_upstream, model="j2-ultra"), request, client=client)
    sent = fake_upstream.last_request
    assert sent.path == "/studio/v1/j2-ultra/complete"
    assert sent.json == {"prompt": "Life is like", "maxTokens": 30, "temperature": 0.0,
                         "stopSequences": ["like"], "numResults": 2}
    assert isinstance(response, CompletionsResponse)
    assert [(c.text, c.finish_reason) for c in response.choices] == [("Fake J2 completion of: Life is ", "stop")] * 2
    assert (response.usage.input_tokens, response.usage.output_tokens) == (
        count_tokens("Life is like"), 2 * count_tokens("Fake J2 completion of: Life is "))
    assert not response.usage.estimated


async def test_j2s_default_length_cut_reads_as_length(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    long_prompt = " ".join(["word"] * 30)
    response = await execute(ai21, ai21_target(fake_upstream, model="j2-mid"), CompletionsRequest(long_prompt),
                             client=client)
    assert isinstance(response, CompletionsResponse)
    assert response.choices[0].finish_reason == "length" and response.usage.output_tokens == 16


async def test_a_validation_error_becomes_a_400_with_the_field(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    request = ChatRequest(CHAT.messages, CommonParams(top_p=1.5))
    with pytest.raises(InvalidRequest) as caught:
        await execute(ai21, ai21_target(fake_upstream), request, client=client)
    assert (caught.value.status, caught.value.code) == (400, "UPSTREAM_BAD_REQUEST")
    assert "top_p: Input should be less than or equal to 1" in caught.value.message


async def test_a_wrong_key_is_an_auth_failure_that_leaks_nothing(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    wrong = "Qp4Rt7Yu1Io3Pa6Sd9Fg2Hj5Kl"
    for model, request in (("jamba-mini", CHAT), ("j2-ultra", CompletionsRequest("x"))):
        with pytest.raises(GatewayError) as caught:
            await execute(ai21, ai21_target(fake_upstream, model=model, key=wrong), request, client=client)
        assert (caught.value.status, caught.value.code) == (502, "UPSTREAM_AUTH_FAILED")
        assert leaked_fragments(caught.value, wrong) == []
        assert caught.value.__cause__ is None and caught.value.__context__ is None


async def test_an_unknown_j2_model_is_the_vendors_404_as_a_400(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    raw = await client.send(UpstreamRequest("POST", f"{fake_upstream.ai21labs_base}/studio/v1/jamba-mini/complete",
                                            {"Authorization": f"Bearer {FakeUpstream.AI21LABS_KEY}"}, {"prompt": "x"}))
    assert raw.status == 404 and orjson.loads(raw.body) == {"detail": "Not Found"}
    error = ai21.map_error(ai21_target(fake_upstream), raw)
    assert (error.status, error.code) == (400, "UPSTREAM_BAD_REQUEST")


@pytest.mark.parametrize(
    ("fault", "error_type", "status", "code"),
    [
        ("429-3", UpstreamError, 502, "UPSTREAM_RATE_LIMITED"),
        ("500", UpstreamError, 502, "UPSTREAM_ERROR"),
        ("503", UpstreamError, 502, "UPSTREAM_ERROR"),
        ("garbage", UpstreamBadResponse, 502, "UPSTREAM_BAD_RESPONSE"),
        ("incomplete", UpstreamBadResponse, 502, "UPSTREAM_BAD_RESPONSE"),
        ("close", UpstreamUnavailable, 502, "UPSTREAM_UNAVAILABLE"),
        ("bad-http", UpstreamUnavailable, 502, "UPSTREAM_UNAVAILABLE"),
    ],
)
@pytest.mark.parametrize("model", ["jamba-mini", "j2-ultra"])
async def test_faults_map_to_the_right_gateway_errors(
    fake_upstream: FakeUpstream, client: UpstreamClient, fault: str, error_type: type[GatewayError], status: int,
    code: str, model: str,
) -> None:
    fake_upstream.add_fault(fault)
    request = CompletionsRequest("x")
    with pytest.raises(error_type) as caught:
        await execute(ai21, ai21_target(fake_upstream, model=model), request, client=client)
    assert (caught.value.status, caught.value.code) == (status, code)
    if fault.startswith("429"):
        assert caught.value.retry_after == 3.0
    assert leaked_fragments(caught.value, FakeUpstream.AI21LABS_KEY.removeprefix("fake")) == []


async def test_a_slow_vendor_times_out(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    with pytest.raises(UpstreamTimeout):
        await execute(ai21, ai21_target(fake_upstream, model="fault-sleep-2"), CHAT, client=client, timeout=0.3)


# ---------------------------------------------------------------- streaming


async def test_jamba_chat_streams_word_by_word_with_final_usage(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    chunks = await collect(ai21, ai21_target(fake_upstream), CHAT, client)
    sent = fake_upstream.last_request
    assert sent.json["stream"] is True and sent.headers["accept"] == "text/event-stream"
    plain = await execute(ai21, ai21_target(fake_upstream), CHAT, client=client)
    assert joined(chunks) == plain.choices[0].message.content  # type: ignore[union-attr]
    assert text_chunks(chunks) > 3 and finish_reasons(chunks) == ["stop"]
    assert chunks[0].deltas[0].role == "assistant"
    assert [c.usage for c in chunks if c.usage] == [plain.usage]


async def test_completions_stream_through_jamba_too(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    chunks = await collect(ai21, ai21_target(fake_upstream), CompletionsRequest("Once", CommonParams(n=2)), client)
    assert joined(chunks, 0) == joined(chunks, 1) == "Fake Jamba answer to: Once"


async def test_a_j2_stream_is_refused_before_any_call(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    with pytest.raises(InvalidRequest, match="does not stream"):
        await collect(ai21, ai21_target(fake_upstream, model="j2-ultra"), CompletionsRequest("x"), client)
    assert fake_upstream.requests == []


async def test_a_vendor_error_mid_stream_raises_after_the_first_chunks(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    fake_upstream.add_fault("stream-error")
    seen = []
    with pytest.raises(UpstreamError) as caught:
        async for chunk in execute_stream(ai21, ai21_target(fake_upstream), CHAT, client=client):
            seen.append(chunk)
    assert joined(seen) and "mid-stream" in caught.value.message


async def test_a_cut_stream_is_unavailable_and_a_status_before_it_maps(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    fake_upstream.add_fault("stream-cut")
    with pytest.raises(UpstreamUnavailable):
        await collect(ai21, ai21_target(fake_upstream), CHAT, client)
    fake_upstream.add_fault("401")
    with pytest.raises(UpstreamError) as caught:
        await collect(ai21, ai21_target(fake_upstream), CHAT, client)
    assert caught.value.code == "UPSTREAM_AUTH_FAILED"


async def test_the_idle_timeout_applies_between_stream_chunks(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    fake_upstream.add_fault("stream-slow-0.5")
    with pytest.raises(UpstreamTimeout):
        await collect(ai21, ai21_target(fake_upstream), CHAT, client, idle_timeout=0.2)

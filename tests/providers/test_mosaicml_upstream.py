"""MosaicML calls through `execute` against the fake upstream over real HTTP."""

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
    UpstreamTimeout,
    UpstreamUnavailable,
)
from providers.client import UpstreamClient, execute, execute_stream
from providers.mosaicml import MosaicMLProvider
from providers.tokens import count_text_tokens
from tests.fake_upstream import FakeUpstream
from tests.fake_upstream.mosaicml import MAX_OUTPUT_TOKENS
from tests.fake_upstream.openai import fake_embedding
from tests.providers._vendor_checks import leaked_fragments

mosaic = MosaicMLProvider()


def mosaic_target(
    fake: FakeUpstream, *, model: str = "mpt-7b-instruct", key: str = FakeUpstream.MOSAICML_KEY
) -> Target:
    return Target(mosaic.name, model, {"mosaicml_api_base": fake.mosaicml_base}, Secrets({"mosaicml_api_key": key}))


async def test_completions_send_the_predict_body_and_estimate_usage(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    request = CompletionsRequest("Once upon a time", CommonParams(temperature=0.3, max_tokens=40))
    response = await execute(mosaic, mosaic_target(fake_upstream), request, client=client)
    sent = fake_upstream.last_request
    assert (sent.method, sent.path) == ("POST", "/mosaicml/mpt-7b-instruct/v1/predict")
    assert sent.headers["authorization"] == FakeUpstream.MOSAICML_KEY
    assert sent.json == {"inputs": ["Once upon a time"], "parameters": {"temperature": 0.3, "max_new_tokens": 40}}
    assert isinstance(response, CompletionsResponse)
    text = "Fake MosaicML completion of: Once upon a time"
    assert response.choices[0].text == text
    assert response.usage.estimated
    assert (response.usage.input_tokens, response.usage.output_tokens) == (
        count_text_tokens("Once upon a time"), count_text_tokens(text))


async def test_llama2_chat_goes_as_one_templated_prompt(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    request = ChatRequest([ChatMessage("system", "Be brief."), ChatMessage("user", "Hi"),
                           ChatMessage("assistant", "Hello."), ChatMessage("user", "What is MPT?")],
                          CommonParams(stop=["MPT"]))
    response = await execute(mosaic, mosaic_target(fake_upstream, model="llama2-70b-chat"), request, client=client)
    prompt = "<s>[INST] <<SYS>> Be brief. <</SYS>> Hi [/INST] Hello. </s><s>[INST] What is MPT? [/INST]"
    assert fake_upstream.last_request.json == {"inputs": [prompt], "parameters": {"stop": ["MPT"]}}
    assert isinstance(response, ChatResponse)
    assert response.choices[0].message.content == "Fake Llama 2 answer to: What is "
    assert response.usage.estimated and response.usage.input_tokens == count_text_tokens(prompt)


async def test_chat_on_a_non_llama2_model_is_refused_before_any_call(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    with pytest.raises(InvalidRequest, match="Llama 2"):
        await execute(mosaic, mosaic_target(fake_upstream), ChatRequest([ChatMessage("user", "x")]), client=client)
    assert fake_upstream.requests == []


async def test_instructor_embeddings(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    response = await execute(mosaic, mosaic_target(fake_upstream, model="instructor-xl"),
                             EmbeddingsRequest(["first text", "second"]), client=client)
    assert fake_upstream.last_request.json == {"inputs": ["first text", "second"]}
    assert isinstance(response, EmbeddingsResponse)
    assert response.embeddings == [fake_embedding("first text"), fake_embedding("second")]
    assert response.usage.estimated and response.usage.output_tokens == 0


async def test_a_token_limit_500_is_the_callers_400(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    request = CompletionsRequest("x", CommonParams(max_tokens=MAX_OUTPUT_TOKENS + 1))
    with pytest.raises(InvalidRequest) as caught:
        await execute(mosaic, mosaic_target(fake_upstream), request, client=client)
    assert (caught.value.status, caught.value.code) == (400, "UPSTREAM_BAD_REQUEST")
    assert "max output tokens is limited to" in caught.value.message


async def test_a_wrong_key_is_an_auth_failure_that_leaks_nothing(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    wrong = "Zq8Wm3Xp6Lv1Rt4Yn7Bc2Hd5"
    with pytest.raises(GatewayError) as caught:
        await execute(mosaic, mosaic_target(fake_upstream, key=wrong), CompletionsRequest("x"), client=client)
    assert (caught.value.status, caught.value.code) == (502, "UPSTREAM_AUTH_FAILED")
    assert fake_upstream.last_request.headers["authorization"] == wrong
    assert leaked_fragments(caught.value, wrong) == []


@pytest.mark.parametrize(
    ("fault", "error_type", "status", "code"),
    [
        ("400", InvalidRequest, 400, "UPSTREAM_BAD_REQUEST"),
        ("429-2", UpstreamError, 502, "UPSTREAM_RATE_LIMITED"),
        ("500", UpstreamError, 502, "UPSTREAM_ERROR"),
        ("garbage", UpstreamBadResponse, 502, "UPSTREAM_BAD_RESPONSE"),
        ("incomplete", UpstreamBadResponse, 502, "UPSTREAM_BAD_RESPONSE"),
        ("close-mid", UpstreamUnavailable, 502, "UPSTREAM_UNAVAILABLE"),
    ],
)
async def test_faults_map_to_the_right_gateway_errors(
    fake_upstream: FakeUpstream, client: UpstreamClient, fault: str, error_type: type[GatewayError], status: int,
    code: str,
) -> None:
    fake_upstream.add_fault(fault)
    with pytest.raises(error_type) as caught:
        await execute(mosaic, mosaic_target(fake_upstream, model="instructor-large"), EmbeddingsRequest(["x"]),
                      client=client)
    assert (caught.value.status, caught.value.code) == (status, code)
    if fault.startswith("429"):
        assert caught.value.retry_after == 2.0
    assert leaked_fragments(caught.value, FakeUpstream.MOSAICML_KEY.removeprefix("fake")) == []


async def test_a_slow_vendor_times_out(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    with pytest.raises(UpstreamTimeout):
        await execute(mosaic, mosaic_target(fake_upstream, model="fault-sleep-2"), CompletionsRequest("x"),
                      client=client, timeout=0.3)


async def test_streaming_is_refused_as_mosaicml_does_not_stream(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    with pytest.raises(InvalidRequest, match="does not stream"):
        async for _ in execute_stream(mosaic, mosaic_target(fake_upstream), CompletionsRequest("x"), client=client):
            pass
    assert fake_upstream.requests == []

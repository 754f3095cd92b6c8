"""TGI calls through `execute` and `execute_stream` against the fake upstream over real HTTP."""

from __future__ import annotations

import time

import orjson
import pytest

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
from providers.huggingface import HFTextGenerationInferenceServerProvider
from tests.fake_upstream import FakeUpstream
from tests.fake_upstream.huggingface import generated_tokens, prompt_tokens
from tests.fake_upstream.openai import count_tokens
from tests.providers._vendor_checks import collect, finish_reasons, joined, leaked_fragments, text_chunks

tgi = HFTextGenerationInferenceServerProvider()
PROMPT = CompletionsRequest("Once upon a time", CommonParams(temperature=0.4, max_tokens=50))
CHAT = ChatRequest([ChatMessage("system", "Be brief."), ChatMessage("user", "What is TGI?")])


def tgi_target(fake: FakeUpstream, *, endpoint: bool = False, token: str | None = None, model: str = "llama") -> Target:
    url = fake.hf_endpoint_url if endpoint else fake.hf_server_url
    return Target(tgi.name, model, {"hf_server_url": url}, Secrets({"hf_api_token": token} if token else {}))


async def test_completions_call_generate_and_read_tgis_own_counts(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    response = await execute(tgi, tgi_target(fake_upstream), PROMPT, client=client)
    sent = fake_upstream.last_request
    assert (sent.method, sent.path) == ("POST", "/tgi/generate")
    assert "authorization" not in sent.headers
    assert sent.json == {"inputs": "Once upon a time", "parameters": {
        "max_new_tokens": 50, "temperature": 0.4, "do_sample": True, "details": True, "decoder_input_details": True}}
    assert isinstance(response, CompletionsResponse)
    text = "Fake TGI completion of: Once upon a time"
    assert response.choices[0].text == text and response.choices[0].finish_reason == "stop"
    # The vendor's counts (BOS and EOS included), not the gateway's estimate.
    assert (response.usage.input_tokens, response.usage.output_tokens) == (
        prompt_tokens("Once upon a time"), generated_tokens(text, "eos_token"))
    assert not response.usage.estimated


async def test_max_tokens_and_stop_sequences_shape_the_answer(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    cut = await execute(tgi, tgi_target(fake_upstream), CompletionsRequest("x", CommonParams(max_tokens=3)),
                        client=client)
    assert isinstance(cut, CompletionsResponse)
    assert (cut.choices[0].text, cut.choices[0].finish_reason) == ("Fake TGI completion", "length")
    assert cut.usage.output_tokens == 3
    stopped = await execute(tgi, tgi_target(fake_upstream), CompletionsRequest("x", CommonParams(stop=["TGI"])),
                            client=client)
    assert isinstance(stopped, CompletionsResponse)
    assert (stopped.choices[0].text, stopped.choices[0].finish_reason) == ("Fake TGI", "stop")  # TGI keeps the stop


async def test_chat_goes_through_tgis_messages_api(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    request = ChatRequest(CHAT.messages, CommonParams(temperature=0.0, max_tokens=40))
    response = await execute(tgi, tgi_target(fake_upstream, model="tgi"), request, client=client)
    sent = fake_upstream.last_request
    assert sent.path == "/tgi/v1/chat/completions"
    assert sent.json == {"model": "tgi", "messages": [{"role": "system", "content": "Be brief."},
                                                       {"role": "user", "content": "What is TGI?"}],
                         "max_tokens": 40, "temperature": 0.0}
    assert isinstance(response, ChatResponse)
    assert response.choices[0].message.content == "Fake TGI answer to: What is TGI?"
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.input_tokens and response.usage.output_tokens and not response.usage.estimated


async def test_a_protected_inference_endpoint_gets_the_token(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    target = tgi_target(fake_upstream, endpoint=True, token=FakeUpstream.HF_TOKEN)
    response = await execute(tgi, target, PROMPT, client=client)
    assert fake_upstream.last_request.headers["authorization"] == f"Bearer {FakeUpstream.HF_TOKEN}"
    assert isinstance(response, CompletionsResponse)


@pytest.mark.parametrize("token", [None, "hf_Wq7Hn2Zp9Lm4Xv8Tk3RbYcQz"])
async def test_an_endpoint_refusing_the_token_is_an_auth_failure_without_the_token(
    fake_upstream: FakeUpstream, client: UpstreamClient, token: str | None
) -> None:
    with pytest.raises(GatewayError) as caught:
        await execute(tgi, tgi_target(fake_upstream, endpoint=True, token=token), CHAT, client=client)
    assert (caught.value.status, caught.value.code) == (502, "UPSTREAM_AUTH_FAILED")
    if token:
        assert leaked_fragments(caught.value, token[3:]) == []


async def test_tgis_validation_errors_become_400_with_its_message(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    request = CompletionsRequest("x", CommonParams(stop=["a", "b", "c", "d", "e"]))
    with pytest.raises(InvalidRequest) as caught:
        await execute(tgi, tgi_target(fake_upstream), request, client=client)
    assert (caught.value.status, caught.value.code) == (400, "UPSTREAM_BAD_REQUEST")
    assert "`stop` supports up to 4 stop sequences" in caught.value.message


async def test_several_candidates_are_refused_without_an_upstream_call(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    with pytest.raises(InvalidRequest):
        await execute(tgi, tgi_target(fake_upstream), CompletionsRequest("x", CommonParams(n=2)), client=client)
    assert fake_upstream.requests == []


@pytest.mark.parametrize(
    ("fault", "error_type", "status", "code"),
    [
        ("422", InvalidRequest, 400, "UPSTREAM_BAD_REQUEST"),
        ("429-4", UpstreamError, 502, "UPSTREAM_RATE_LIMITED"),
        ("424", UpstreamError, 502, "UPSTREAM_ERROR"),
        ("500", UpstreamError, 502, "UPSTREAM_ERROR"),
        ("garbage", UpstreamBadResponse, 502, "UPSTREAM_BAD_RESPONSE"),
        ("incomplete", UpstreamBadResponse, 502, "UPSTREAM_BAD_RESPONSE"),
        ("close", UpstreamUnavailable, 502, "UPSTREAM_UNAVAILABLE"),
        ("close-mid", UpstreamUnavailable, 502, "UPSTREAM_UNAVAILABLE"),
    ],
)
async def test_faults_map_to_the_right_gateway_errors(
    fake_upstream: FakeUpstream, client: UpstreamClient, fault: str, error_type: type[GatewayError], status: int,
    code: str,
) -> None:
    fake_upstream.add_fault(fault)
    token = "hf_Pz8Kq3Lm6Wx1Rv9Tb4Nc7Yd"
    with pytest.raises(error_type) as caught:
        await execute(tgi, tgi_target(fake_upstream, endpoint=True, token=token), PROMPT, client=client)
    assert (caught.value.status, caught.value.code) == (status, code)
    if fault.startswith("429"):
        assert caught.value.retry_after == 4.0
    assert leaked_fragments(caught.value, token[3:]) == []


async def test_a_slow_server_times_out(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    fake_upstream.add_fault("sleep-2")
    with pytest.raises(UpstreamTimeout):
        await execute(tgi, tgi_target(fake_upstream), PROMPT, client=client, timeout=0.3)


# ---------------------------------------------------------------- streaming


async def test_completions_stream_from_generate_stream_token_by_token(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    chunks = await collect(tgi, tgi_target(fake_upstream), PROMPT, client)
    sent = fake_upstream.last_request
    assert sent.path == "/tgi/generate_stream" and sent.headers["accept"] == "text/event-stream"
    assert "decoder_input_details" not in sent.json["parameters"]
    plain = await execute(tgi, tgi_target(fake_upstream), PROMPT, client=client)
    assert joined(chunks) == plain.choices[0].text  # type: ignore[union-attr]
    assert "</s>" not in joined(chunks) and text_chunks(chunks) > 3  # the special EOS token carries no text
    assert finish_reasons(chunks) == ["stop"]
    usage = [c.usage for c in chunks if c.usage]
    assert usage == [plain.usage]


async def test_a_stream_cut_by_max_tokens_ends_with_length(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    chunks = await collect(tgi, tgi_target(fake_upstream), CompletionsRequest("x", CommonParams(max_tokens=2)), client)
    assert joined(chunks) == "Fake TGI" and finish_reasons(chunks) == ["length"]
    assert [c.usage.output_tokens for c in chunks if c.usage] == [2]


async def test_chat_streams_in_openai_framing_with_final_usage(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    chunks = await collect(tgi, tgi_target(fake_upstream), CHAT, client)
    sent = fake_upstream.last_request
    assert sent.json["stream"] is True and sent.json["stream_options"] == {"include_usage": True}
    assert joined(chunks) == "Fake TGI answer to: What is TGI?" and finish_reasons(chunks) == ["stop"]
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1 and usage[0].output_tokens == count_tokens("Fake TGI answer to: What is TGI?") + 1


@pytest.mark.parametrize("request_", [PROMPT, CHAT])
async def test_a_vendor_error_mid_stream_raises_after_the_first_chunks(
    fake_upstream: FakeUpstream, client: UpstreamClient, request_: CompletionsRequest | ChatRequest
) -> None:
    fake_upstream.add_fault("stream-error")
    seen = []
    with pytest.raises(UpstreamError) as caught:
        async for chunk in execute_stream(tgi, tgi_target(fake_upstream), request_, client=client):
            seen.append(chunk)
    assert seen and "mid-stream" in caught.value.message and "CUDA out of memory" in caught.value.message


@pytest.mark.parametrize("request_", [PROMPT, CHAT])
async def test_a_connection_cut_mid_stream_is_unavailable(
    fake_upstream: FakeUpstream, client: UpstreamClient, request_: CompletionsRequest | ChatRequest
) -> None:
    fake_upstream.add_fault("stream-cut")
    with pytest.raises(UpstreamUnavailable):
        await collect(tgi, tgi_target(fake_upstream), request_, client)


async def test_the_first_token_arrives_before_a_slow_stream_ends(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    fake_upstream.add_fault("stream-slow-0.1")
    started, first_at, count = time.monotonic(), None, 0
    async for _chunk in execute_stream(tgi, tgi_target(fake_upstream), PROMPT, client=client):
        count += 1
        first_at = first_at or time.monotonic() - started
    assert count >= 6 and first_at is not None and first_at < 0.4 < time.monotonic() - started


async def test_an_error_status_before_the_stream_maps_like_a_plain_call(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    fake_upstream.add_fault("429-2")
    with pytest.raises(UpstreamError) as caught:
        await collect(tgi, tgi_target(fake_upstream), PROMPT, client)
    assert (caught.value.code, caught.value.retry_after) == ("UPSTREAM_RATE_LIMITED", 2.0)


async def test_the_fake_is_as_strict_as_tgi(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    url = fake_upstream.hf_server_url
    cases = [
        ("/generate", {"inputs": "x", "parameters": {"temperature": 0}}, "`temperature` must be strictly positive"),
        ("/generate", {"inputs": "x", "parameters": {"top_p": 1.0}}, "`top_p` must be > 0.0 and < 1.0"),
        ("/generate", {"inputs": "", "parameters": {}}, "`inputs` cannot be empty"),
        ("/generate", {"inputs": "x", "parameters": {"max_tokens": 5}}, "unknown field `max_tokens`"),
        ("/generate_stream", {"inputs": "x", "parameters": {"decoder_input_details": True}},
         "not supported when streaming"),
    ]
    for path, body, message in cases:
        raw = await client.send(UpstreamRequest("POST", f"{url}{path}", {}, body))
        data = orjson.loads(raw.body)
        assert (raw.status, data["error_type"]) == (422, "validation") and message in data["error"], (path, body)

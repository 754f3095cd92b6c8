"""Amazon Bedrock through `execute` and `execute_stream` against the fake upstream over real HTTP:
every family's bodies and answers, SigV4 verified by the fake, the credential modes (keys, session
token, Bedrock API key, assumed role via a fake STS, the gateway's own identity), faults, streams."""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Iterator
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
from providers.bedrock import AmazonBedrockProvider, reset_credential_caches
from providers.client import UpstreamClient, execute, execute_stream
from providers.streaming import StreamChunk
from tests.fake_upstream import FakeUpstream
from tests.fake_upstream.openai import count_tokens, fake_embedding

bedrock = AmazonBedrockProvider()
CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
COMMAND_R = "cohere.command-r-v1:0"
TITAN = "amazon.titan-text-express-v1"
LLAMA3 = "meta.llama3-8b-instruct-v1:0"
LLAMA4 = "us.meta.llama4-scout-17b-instruct-v1:0"
TEXT_MODELS = (CLAUDE, COMMAND_R, TITAN, LLAMA3, LLAMA4)
CHAT = ChatRequest(
    [ChatMessage("system", "You are terse."), ChatMessage("user", "Hi"), ChatMessage("assistant", "Hello!"),
     ChatMessage("user", "What is 2+2?")],
    CommonParams(temperature=0.4, max_tokens=50),
)
ANSWER = "Fake answer to: What is 2+2?"


@pytest.fixture(autouse=True)
def isolated_aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[None]:
    """No AWS identity of the machine's leaks in: no env keys, no config files, no metadata service."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    reset_credential_caches()
    yield
    reset_credential_caches()


def target(fake: FakeUpstream, model: str = CLAUDE, secrets: dict[str, str] | None = None, **config: Any) -> Target:
    keys = {"aws_access_key_id": FakeUpstream.AWS_ACCESS_KEY_ID,
            "aws_secret_access_key": FakeUpstream.AWS_SECRET_ACCESS_KEY}
    settings = {"aws_region": FakeUpstream.AWS_REGION, "bedrock_api_base": fake.bedrock_base, **config}
    return Target("amazon-bedrock", model, settings, Secrets(keys if secrets is None else secrets))


def sts_calls(fake: FakeUpstream) -> int:
    return sum(1 for r in fake.requests if r.path.startswith("/aws-sts"))


# ---------------------------------------------------------------- every family, signed


@pytest.mark.parametrize("model", TEXT_MODELS)
async def test_chat_is_signed_sent_in_the_familys_body_and_answered(
    model: str, fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    response = await execute(bedrock, target(fake_upstream, model), CHAT, client=client)
    sent = fake_upstream.last_request
    assert (sent.method, sent.path) == ("POST", f"/model/{model}/invoke")
    assert f"{FakeUpstream.AWS_ACCESS_KEY_ID}/" in sent.headers["authorization"]
    assert "/us-east-1/bedrock/aws4_request" in sent.headers["authorization"]
    assert "x-amz-date" in sent.headers and "x-amz-security-token" not in sent.headers
    first_key = {CLAUDE: "anthropic_version", COMMAND_R: "message", TITAN: "inputText"}.get(model, "prompt")
    assert first_key in sent.json
    assert isinstance(response, ChatResponse)
    assert response.model == model
    assert response.choices[0].message.content == ANSWER
    assert response.choices[0].finish_reason == "stop"
    assert not response.usage.estimated
    assert response.usage.output_tokens == count_tokens(ANSWER)


@pytest.mark.parametrize("model", TEXT_MODELS)
async def test_completions_for_every_text_family(model: str, fake_upstream: FakeUpstream,
                                                 client: UpstreamClient) -> None:
    request = CompletionsRequest("Once upon a time", CommonParams(max_tokens=3))
    response = await execute(bedrock, target(fake_upstream, model), request, client=client)
    assert isinstance(response, CompletionsResponse)
    expected = "Fake answer to" if model in (CLAUDE, COMMAND_R) else "Fake completion of"
    assert response.choices[0].text == expected
    assert response.choices[0].finish_reason == "length"
    assert (response.usage.output_tokens, response.usage.estimated) == (3, False)


async def test_cohere_chat_usage_comes_from_bedrocks_headers(fake_upstream: FakeUpstream,
                                                             client: UpstreamClient) -> None:
    response = await execute(bedrock, target(fake_upstream, COMMAND_R), CHAT, client=client)
    assert fake_upstream.last_request.json["chat_history"] == [
        {"role": "USER", "message": "Hi"}, {"role": "CHATBOT", "message": "Hello!"}]
    prompt = sum(count_tokens(t) for t in ("You are terse.", "Hi", "Hello!", "What is 2+2?"))
    assert (response.usage.input_tokens, response.usage.estimated) == (prompt, False)


async def test_embeddings_from_cohere_and_titan(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    cohere = await execute(bedrock, target(fake_upstream, "cohere.embed-english-v3"), EmbeddingsRequest(["a b", "c"]),
                           client=client)
    assert fake_upstream.last_request.json == {"texts": ["a b", "c"], "input_type": "search_document"}
    assert isinstance(cohere, EmbeddingsResponse)
    assert cohere.embeddings == [fake_embedding("a b"), fake_embedding("c")]
    assert (cohere.usage.input_tokens, cohere.usage.output_tokens) == (3, 0)
    titan = await execute(bedrock, target(fake_upstream, "amazon.titan-embed-text-v2:0"),
                          EmbeddingsRequest(["hello world"]), client=client)
    assert isinstance(titan, EmbeddingsResponse)
    assert titan.embeddings == [fake_embedding("hello world")] and titan.usage.input_tokens == 2


async def test_titan_embeddings_with_several_inputs_is_a_400_before_any_call(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    with pytest.raises(InvalidRequest, match="one text per call"):
        await execute(bedrock, target(fake_upstream, "amazon.titan-embed-text-v2:0"), EmbeddingsRequest(["a", "b"]),
                      client=client)
    assert fake_upstream.requests == []


async def test_an_inference_profile_arn_is_escaped_and_still_verifies(fake_upstream: FakeUpstream,
                                                                      client: UpstreamClient) -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"
    response = await execute(bedrock, target(fake_upstream, arn), CHAT, client=client)
    assert response.choices[0].message.content == ANSWER  # type: ignore[union-attr]


async def test_vendor_validation_error_is_a_400_with_bedrocks_message(fake_upstream: FakeUpstream,
                                                                      client: UpstreamClient) -> None:
    request = ChatRequest(CHAT.messages, CommonParams(temperature=3.0))  # 1.5 on Llama's 0..1 scale
    with pytest.raises(InvalidRequest) as caught:
        await execute(bedrock, target(fake_upstream, LLAMA3), request, client=client)
    assert (caught.value.status, caught.value.code) == (400, "UPSTREAM_BAD_REQUEST")
    assert "Malformed input request: #/temperature" in caught.value.message


# ---------------------------------------------------------------- credentials


async def test_temporary_keys_send_their_session_token(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    secrets = {"aws_access_key_id": FakeUpstream.AWS_TEMP_ACCESS_KEY_ID,
               "aws_secret_access_key": FakeUpstream.AWS_TEMP_SECRET_ACCESS_KEY,
               "aws_session_token": FakeUpstream.AWS_SESSION_TOKEN}
    await execute(bedrock, target(fake_upstream, secrets=secrets), CHAT, client=client)
    assert fake_upstream.last_request.headers["x-amz-security-token"] == FakeUpstream.AWS_SESSION_TOKEN
    # Without it, the fake (as AWS) does not know the temporary key.
    del secrets["aws_session_token"]
    with pytest.raises(UpstreamError) as caught:
        await execute(bedrock, target(fake_upstream, secrets=secrets), CHAT, client=client)
    assert caught.value.code == "UPSTREAM_AUTH_FAILED"


def _every_rendering(error: BaseException) -> str:
    parts = [str(error), repr(error), *map(str, error.args), *map(repr, error.args),
             *getattr(error, "__notes__", []), "".join(traceback.format_exception(error))]
    if isinstance(error, GatewayError):
        parts.append(error.message)
    return "\n".join(parts)


async def test_a_wrong_secret_fails_the_signature_and_leaks_no_part_of_any_key(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    wrong = "wRoNg/7Lp2Vt8Wz6Kd3NbYc5Hj1Sg0aE2rTfAkE9Q"
    secrets = {"aws_access_key_id": FakeUpstream.AWS_ACCESS_KEY_ID, "aws_secret_access_key": wrong}
    raw = await client.send(bedrock.build_request(target(fake_upstream, secrets=secrets), CHAT))
    assert raw.status == 403 and raw.headers["x-amzn-errortype"].startswith("InvalidSignatureException")
    with pytest.raises(GatewayError) as caught:
        await execute(bedrock, target(fake_upstream, secrets=secrets), CHAT, client=client)
    error = caught.value
    assert (error.status, error.code) == (502, "UPSTREAM_AUTH_FAILED")
    rendered = _every_rendering(error)
    for secret in (wrong, FakeUpstream.AWS_ACCESS_KEY_ID[4:]):
        leaked = sorted({secret[i : i + 5] for i in range(len(secret) - 4)} & {
            rendered[i : i + 5] for i in range(len(rendered) - 4)})
        assert leaked == [], f"key fragments leaked: {leaked}"
    assert error.__cause__ is None and error.__context__ is None


async def test_an_unknown_key_and_a_wrong_region_are_auth_failures(fake_upstream: FakeUpstream,
                                                                   client: UpstreamClient) -> None:
    unknown = {"aws_access_key_id": "AKIAUNKNOWN000000000", "aws_secret_access_key": "x" * 40}
    for bad_target in (target(fake_upstream, secrets=unknown), target(fake_upstream, aws_region="eu-west-1")):
        with pytest.raises(UpstreamError) as caught:
            await execute(bedrock, bad_target, CHAT, client=client)
        assert caught.value.code == "UPSTREAM_AUTH_FAILED"


async def test_a_bedrock_api_key_is_sent_as_a_bearer_token(fake_upstream: FakeUpstream,
                                                          client: UpstreamClient) -> None:
    secrets = {"aws_bearer_token": FakeUpstream.BEDROCK_API_KEY}
    response = await execute(bedrock, target(fake_upstream, TITAN, secrets=secrets), CHAT, client=client)
    assert response.choices[0].message.content == ANSWER  # type: ignore[union-attr]
    assert fake_upstream.last_request.headers["authorization"] == f"Bearer {FakeUpstream.BEDROCK_API_KEY}"
    with pytest.raises(UpstreamError) as caught:
        await execute(bedrock, target(fake_upstream, TITAN, secrets={"aws_bearer_token": "ABSKwrong"}), CHAT,
                      client=client)
    assert caught.value.code == "UPSTREAM_AUTH_FAILED"


async def test_a_role_is_assumed_through_sts_once_and_its_credentials_sign_the_calls(
    fake_upstream: FakeUpstream, client: UpstreamClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", fake_upstream.sts_url)
    routed = target(fake_upstream, LLAMA3, aws_role_arn=FakeUpstream.AWS_ROLE_ARN, session_length_seconds=900)
    for _ in range(2):
        response = await execute(bedrock, routed, CHAT, client=client)
        assert response.choices[0].message.content == ANSWER  # type: ignore[union-attr]
    assert sts_calls(fake_upstream) == 1  # cached for the second call
    sts = next(r for r in fake_upstream.requests if r.path.startswith("/aws-sts"))
    assert f"{FakeUpstream.AWS_ACCESS_KEY_ID}/" in sts.headers["authorization"]
    assert "/us-east-1/sts/aws4_request" in sts.headers["authorization"]
    assert b"DurationSeconds=900" in sts.body and b"RoleSessionName=llm-gateway-bedrock" in sts.body
    signed = fake_upstream.last_request.headers
    assert "Credential=ASIA" in signed["authorization"] and signed["x-amz-security-token"]


async def test_a_role_sts_refuses_is_an_auth_failure_naming_no_account(
    fake_upstream: FakeUpstream, client: UpstreamClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", fake_upstream.sts_url)
    routed = target(fake_upstream, LLAMA3, aws_role_arn="arn:aws:iam::123456789012:role/not-granted")
    with pytest.raises(UpstreamError) as caught:
        await execute(bedrock, routed, CHAT, client=client)
    assert caught.value.code == "UPSTREAM_AUTH_FAILED"
    assert "AccessDenied" in caught.value.message
    assert "123456789012" not in _every_rendering(caught.value)
    assert not any(r.path.startswith("/model/") for r in fake_upstream.requests)


async def test_without_route_credentials_the_gateways_own_identity_is_used(
    fake_upstream: FakeUpstream, client: UpstreamClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FakeUpstream.AWS_TEMP_ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FakeUpstream.AWS_TEMP_SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", FakeUpstream.AWS_SESSION_TOKEN)
    response = await execute(bedrock, target(fake_upstream, COMMAND_R, secrets={}), CHAT, client=client)
    assert response.choices[0].message.content == ANSWER  # type: ignore[union-attr]
    assert f"{FakeUpstream.AWS_TEMP_ACCESS_KEY_ID}/" in fake_upstream.last_request.headers["authorization"]


async def test_no_credentials_anywhere_is_an_auth_failure_without_a_call(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    started = time.monotonic()
    with pytest.raises(UpstreamError, match="no AWS credentials") as caught:
        await execute(bedrock, target(fake_upstream, secrets={}), CHAT, client=client)
    assert caught.value.code == "UPSTREAM_AUTH_FAILED"
    assert fake_upstream.requests == []
    assert time.monotonic() - started < 3


# ---------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("fault", "error_class", "code"),
    [
        ("500", UpstreamError, "UPSTREAM_ERROR"),
        ("503", UpstreamError, "UPSTREAM_ERROR"),
        ("403", UpstreamError, "UPSTREAM_AUTH_FAILED"),
        ("400", InvalidRequest, "UPSTREAM_BAD_REQUEST"),
        ("408", UpstreamTimeout, "UPSTREAM_TIMEOUT"),
        ("garbage", UpstreamBadResponse, "UPSTREAM_BAD_RESPONSE"),
        ("incomplete", UpstreamBadResponse, "UPSTREAM_BAD_RESPONSE"),
        ("close", UpstreamUnavailable, "UPSTREAM_UNAVAILABLE"),
    ],
)
async def test_faults_map_to_the_right_codes(fault: str, error_class: type, code: str,
                                             fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    fake_upstream.add_fault(fault)
    with pytest.raises(error_class) as caught:
        await execute(bedrock, target(fake_upstream, TITAN), CHAT, client=client)
    assert caught.value.code == code


async def test_throttling_is_rate_limited_with_retry_after_also_by_magic_model_name(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    fake_upstream.add_fault("429-7")
    with pytest.raises(UpstreamError) as caught:
        await execute(bedrock, target(fake_upstream), CHAT, client=client)
    assert (caught.value.code, caught.value.retry_after) == ("UPSTREAM_RATE_LIMITED", 7)
    with pytest.raises(UpstreamError) as caught:
        await execute(bedrock, target(fake_upstream, "anthropic.fault-429-2"), CHAT, client=client)
    assert (caught.value.code, caught.value.retry_after) == ("UPSTREAM_RATE_LIMITED", 2)
    assert "Too many requests" in caught.value.message


async def test_a_timeout_is_504(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    fake_upstream.add_fault("sleep-1")
    with pytest.raises(UpstreamTimeout):
        await execute(bedrock, target(fake_upstream), CHAT, client=client, timeout=0.3)


# ---------------------------------------------------------------- streams


def joined(chunks: list[StreamChunk]) -> str:
    return "".join(d.text for c in chunks for d in c.deltas)


async def collect(fake: FakeUpstream, client: UpstreamClient, model: str = CLAUDE,
                  request: StdRequest = CHAT, **kwargs: float) -> list[StreamChunk]:
    stream = execute_stream(bedrock, target(fake, model), request, client=client, **kwargs)
    return [chunk async for chunk in stream]


@pytest.mark.parametrize("model", TEXT_MODELS)
async def test_stream_equals_the_plain_answer_and_ends_with_bedrocks_metrics(
    model: str, fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    chunks = await collect(fake_upstream, client, model)
    sent = fake_upstream.last_request
    assert sent.path == f"/model/{model}/invoke-with-response-stream"
    assert sent.headers["x-amzn-bedrock-accept"] == "application/json"
    plain = await execute(bedrock, target(fake_upstream, model), CHAT, client=client)
    assert joined(chunks) == plain.choices[0].message.content  # type: ignore[union-attr]
    assert len([c for c in chunks if any(d.text for d in c.deltas)]) > 3  # really piece by piece
    assert chunks[0].deltas[0].role == "assistant"
    assert [d.finish_reason for c in chunks for d in c.deltas if d.finish_reason] == ["stop"]
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1
    assert (usage[0].input_tokens, usage[0].output_tokens) == (plain.usage.input_tokens, plain.usage.output_tokens)


async def test_completions_stream(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    chunks = await collect(fake_upstream, client, LLAMA3, CompletionsRequest("Once upon a time"))
    assert joined(chunks) == "Fake completion of: Once upon a time"
    assert all(d.role is None for c in chunks for d in c.deltas)


async def test_first_chunk_arrives_before_a_slow_stream_ends(fake_upstream: FakeUpstream,
                                                             client: UpstreamClient) -> None:
    fake_upstream.add_fault("stream-slow-0.15")
    started = time.monotonic()
    first_at = None
    count = 0
    async for _chunk in execute_stream(bedrock, target(fake_upstream, TITAN), CHAT, client=client):
        count += 1
        first_at = first_at or time.monotonic() - started
    assert count >= 6
    assert first_at is not None and first_at < 0.5 and time.monotonic() - started > 0.15 * 6 * 0.9


async def test_a_model_stream_error_raises_after_the_first_chunks(fake_upstream: FakeUpstream,
                                                                 client: UpstreamClient) -> None:
    fake_upstream.add_fault("stream-error")
    seen: list[StreamChunk] = []
    with pytest.raises(UpstreamError) as caught:
        async for chunk in execute_stream(bedrock, target(fake_upstream), CHAT, client=client):
            seen.append(chunk)
    assert seen and "mid-stream: modelStreamErrorException" in caught.value.message
    assert caught.value.code == "UPSTREAM_ERROR"


async def test_a_connection_cut_mid_stream_is_unavailable(fake_upstream: FakeUpstream,
                                                          client: UpstreamClient) -> None:
    fake_upstream.add_fault("stream-cut")
    with pytest.raises(UpstreamUnavailable):
        await collect(fake_upstream, client, COMMAND_R)


async def test_an_error_status_before_the_stream_maps_like_a_plain_call(fake_upstream: FakeUpstream,
                                                                       client: UpstreamClient) -> None:
    fake_upstream.add_fault("429-7")
    with pytest.raises(UpstreamError) as caught:
        await collect(fake_upstream, client)
    assert (caught.value.code, caught.value.retry_after) == ("UPSTREAM_RATE_LIMITED", 7)


async def test_a_garbage_stream_is_a_bad_response(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    fake_upstream.add_fault("garbage")
    with pytest.raises(UpstreamBadResponse):
        await collect(fake_upstream, client)


async def test_closing_the_stream_early_stops_reading(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    fake_upstream.add_fault("stream-slow-0.2")
    stream = execute_stream(bedrock, target(fake_upstream, LLAMA3), CHAT, client=client)
    started = time.monotonic()
    await anext(stream)
    await stream.aclose()
    assert time.monotonic() - started < 1.0

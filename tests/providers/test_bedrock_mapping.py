"""Amazon Bedrock's pure mapping: settings, model families' bodies and answers, the event stream
parser, error mapping, and the signed request (no network)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from providers.base import (
    ChatMessage,
    ChatRequest,
    ChatResponse,
    CommonParams,
    CompletionsRequest,
    CompletionsResponse,
    EmbeddingsRequest,
    EmbeddingsResponse,
    InvalidRequest,
    ProviderConfigError,
    RouteType,
    Secrets,
    Target,
    UpstreamError,
    UpstreamResponse,
    UpstreamTimeout,
    UpstreamUnavailable,
    Usage,
)
from providers.bedrock import AmazonBedrockProvider, BedrockProvider, flatten_mlflow_config, header_usage, invoke_url
from providers.bedrock.families import (
    AnswerContext,
    AnthropicFamily,
    CohereChatFamily,
    CohereEmbedFamily,
    LlamaFamily,
    TitanEmbedFamily,
    TitanTextFamily,
    base_model_name,
    family_for,
    llama_prompt,
    titan_conversation,
)
from providers.bedrock.settings import BedrockSettings, default_api_base
from providers.bedrock.stream import BedrockStreamParser
from providers.streaming import StreamChunk
from tests.fake_upstream.bedrock import chunk_frame, event_frame, exception_frame

provider = AmazonBedrockProvider()
KEYS = Secrets({"aws_access_key_id": "AKIAEXAMPLE000000000",
                "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"})
CONFIG = {"aws_region": "us-east-1"}
CHAT = ChatRequest([
    ChatMessage("system", "You are terse."),
    ChatMessage("user", "Hi"),
    ChatMessage("assistant", "Hello!"),
    ChatMessage("user", "What is 2+2?"),
])


def context(**kwargs: Any) -> AnswerContext:
    return AnswerContext(model=kwargs.pop("model", "m"), **kwargs)


# ---------------------------------------------------------------- provider contract and settings


def test_both_names_are_one_provider_with_mlflow_config_keys() -> None:
    assert (AmazonBedrockProvider.name, BedrockProvider.name) == ("amazon-bedrock", "bedrock")
    assert isinstance(BedrockProvider(), AmazonBedrockProvider)
    # The admin's "API key" field fills the first: the secret half of an access key.
    assert provider.secret_fields == (
        "aws_secret_access_key", "aws_access_key_id", "aws_session_token", "aws_bearer_token")
    assert provider.config_fields == ("aws_region", "aws_role_arn", "session_length_seconds", "bedrock_api_base")
    assert provider.route_types == frozenset(RouteType)
    assert provider.temperature_scale == 0.5
    assert provider.supports_streaming


def test_validate_config_accepts_keys_role_bearer_and_ambient_setups() -> None:
    for route_type in RouteType:
        provider.validate_config(route_type=route_type, config=CONFIG, secrets=KEYS)
    provider.validate_config(route_type=RouteType.CHAT, config={**CONFIG, "aws_role_arn":
                             "arn:aws:iam::123456789012:role/invoker", "session_length_seconds": 3600}, secrets={})
    provider.validate_config(route_type=RouteType.CHAT, config=CONFIG, secrets={"aws_bearer_token": "ABSK..."})
    provider.validate_config(route_type=RouteType.CHAT, config=CONFIG, secrets={})


@pytest.mark.parametrize(
    ("config", "secrets", "message"),
    [
        ({}, {}, "needs config field aws_region"),
        ({"aws_region": "Virginia"}, {}, "not an AWS region name"),
        ({**CONFIG, "bedrock_api_base": "ftp://x"}, {}, "http:// or https://"),
        ({**CONFIG, "aws_role_arn": "my-role"}, {}, "IAM role ARN"),
        ({**CONFIG, "session_length_seconds": 3600}, {}, "only applies with aws_role_arn"),
        ({**CONFIG, "aws_role_arn": "arn:aws:iam::123456789012:role/r", "session_length_seconds": 60}, {}, "900"),
        (CONFIG, {"aws_access_key_id": "AKIA"}, "needs aws_secret_access_key too"),
        (CONFIG, {"aws_secret_access_key": "s"}, "needs aws_access_key_id too"),
        (CONFIG, {"aws_session_token": "t"}, "only goes with"),
        ({**CONFIG, "aws_config": {}}, {}, "at the top level"),
    ],
)
def test_validate_config_refuses_what_cannot_work(config: dict[str, Any], secrets: dict[str, str],
                                                  message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    with pytest.raises(ProviderConfigError, match=message) as caught:
        provider.validate_config(route_type=RouteType.CHAT, config=config, secrets=secrets)
    assert caught.value.status == 400


def test_region_defaults_to_the_environment_as_boto3_does() -> None:
    settings = BedrockSettings.from_config({}, environ={"AWS_DEFAULT_REGION": "eu-central-1"})
    assert settings.region == "eu-central-1"
    assert settings.api_base == "https://bedrock-runtime.eu-central-1.amazonaws.com"
    assert BedrockSettings.from_config({"aws_region": "us-west-2"}, environ={"AWS_REGION": "eu-west-1"}).region == (
        "us-west-2")
    assert default_api_base("cn-north-1") == "https://bedrock-runtime.cn-north-1.amazonaws.com.cn"
    assert BedrockSettings.from_config({**CONFIG, "bedrock_api_base": "http://proxy:8080/"}).api_base == (
        "http://proxy:8080")


def test_mlflow_nested_aws_config_flattens_into_route_keys() -> None:
    mlflow = {"aws_config": {"aws_region": "us-east-1", "aws_access_key_id": "AKIA", "aws_secret_access_key": "s"}}
    assert flatten_mlflow_config(mlflow) == {
        "aws_region": "us-east-1", "aws_access_key_id": "AKIA", "aws_secret_access_key": "s"}
    assert flatten_mlflow_config({"aws_region": "us-east-1"}) == {"aws_region": "us-east-1"}
    with pytest.raises(ProviderConfigError, match="both inside and outside"):
        flatten_mlflow_config({"aws_region": "x", "aws_config": {"aws_region": "y"}})
    with pytest.raises(ProviderConfigError, match="must be an object"):
        flatten_mlflow_config({"aws_config": "us-east-1"})


# ---------------------------------------------------------------- families


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("anthropic.claude-3-5-sonnet-20240620-v1:0", AnthropicFamily),
        ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", AnthropicFamily),
        ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", AnthropicFamily),
        ("arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0", AnthropicFamily),
        ("cohere.command-r-plus-v1:0", CohereChatFamily),
        ("cohere.embed-multilingual-v3", CohereEmbedFamily),
        ("amazon.titan-text-premier-v1:0", TitanTextFamily),
        ("amazon.titan-embed-text-v2:0", TitanEmbedFamily),
        ("meta.llama3-1-70b-instruct-v1:0", LlamaFamily),
        ("eu.meta.llama3-2-3b-instruct-v1:0", LlamaFamily),
        ("meta.llama4-maverick-17b-instruct-v1:0", LlamaFamily),
    ],
)
def test_family_comes_from_the_model_id_prefix(model: str, family: type) -> None:
    assert isinstance(family_for(model), family)


@pytest.mark.parametrize("model", ["mistral.mistral-large-2402-v1:0", "amazon.nova-pro-v1:0",
                                   "cohere.command-text-v14", "meta.llama2-70b-chat-v1",
                                   "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc123"])
def test_unmappable_models_are_a_400_naming_the_supported_families(model: str) -> None:
    with pytest.raises(InvalidRequest, match="anthropic") as caught:
        family_for(model)
    assert caught.value.status == 400


def test_base_model_name_strips_arns_and_geographies() -> None:
    assert base_model_name("apac.amazon.titan-text-express-v1") == "amazon.titan-text-express-v1"
    assert base_model_name("arn:aws:bedrock:us-east-1:1:inference-profile/us.meta.llama3-2-1b-instruct-v1:0") == (
        "meta.llama3-2-1b-instruct-v1:0")


def test_anthropic_body_is_the_messages_api_with_bedrocks_version_and_no_model() -> None:
    request = ChatRequest(CHAT.messages, CommonParams(temperature=1.0, max_tokens=64, top_p=0.9, stop=["\n\n"]))
    assert AnthropicFamily().request_body(request) == {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 64,
        "system": "You are terse.",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "What is 2+2?"},
        ],
        "temperature": 0.5,
        "top_p": 0.9,
        "stop_sequences": ["\n\n"],
    }
    completion = AnthropicFamily().request_body(CompletionsRequest("Say hi"))
    assert completion == {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 1024,
                          "messages": [{"role": "user", "content": "Say hi"}]}


@pytest.mark.parametrize("family", [AnthropicFamily(), CohereChatFamily(), TitanTextFamily(), LlamaFamily(3)])
def test_more_than_one_candidate_is_refused_by_every_text_family(family: Any) -> None:
    with pytest.raises(InvalidRequest, match=r"n \(candidate_count\) must be 1") as caught:
        family.request_body(ChatRequest(CHAT.messages, CommonParams(n=2)))
    assert caught.value.status == 400


def test_cohere_chat_body_has_message_history_and_preamble() -> None:
    params = CommonParams(temperature=0.6, top_p=1.0, max_tokens=20, stop=["END"], presence_penalty=0.5)
    body = CohereChatFamily().request_body(ChatRequest(CHAT.messages, params))
    assert body == {
        "message": "What is 2+2?",
        "chat_history": [{"role": "USER", "message": "Hi"}, {"role": "CHATBOT", "message": "Hello!"}],
        "preamble": "You are terse.",
        "temperature": 0.3,
        "p": 0.99,
        "presence_penalty": 0.5,
        "max_tokens": 20,
        "stop_sequences": ["END"],
    }
    assert CohereChatFamily().request_body(CompletionsRequest("Hi")) == {"message": "Hi"}


def test_cohere_chat_refuses_a_last_turn_not_the_users_and_negative_penalties() -> None:
    with pytest.raises(InvalidRequest, match="last message must have role 'user'"):
        CohereChatFamily().request_body(ChatRequest([ChatMessage("user", "a"), ChatMessage("assistant", "b")]))
    with pytest.raises(InvalidRequest, match="between 0 and 1"):
        CohereChatFamily().request_body(ChatRequest(CHAT.messages, CommonParams(frequency_penalty=-1.0)))


def test_titan_text_chat_is_its_user_bot_conversation() -> None:
    assert titan_conversation(CHAT.messages) == "You are terse.\nUser: Hi\nBot: Hello!\nUser: What is 2+2?\nBot:"
    body = TitanTextFamily().request_body(ChatRequest(CHAT.messages, CommonParams(temperature=2.0, max_tokens=9,
                                                                                   top_p=0.5, stop=["User:"])))
    assert body["textGenerationConfig"] == {"temperature": 1.0, "topP": 0.5, "maxTokenCount": 9,
                                            "stopSequences": ["User:"]}
    assert TitanTextFamily().request_body(CompletionsRequest("Once")) == {"inputText": "Once"}
    with pytest.raises(InvalidRequest, match="not supported"):
        TitanTextFamily().request_body(ChatRequest(CHAT.messages, CommonParams(presence_penalty=0.4)))


def test_llama_3_and_4_chat_templates() -> None:
    messages = [ChatMessage("system", "Be kind."), ChatMessage("user", " Hi ")]
    assert llama_prompt(messages, version=3) == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe kind.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert llama_prompt(messages, version=4) == (
        "<|begin_of_text|><|header_start|>system<|header_end|>\n\nBe kind.<|eot|>"
        "<|header_start|>user<|header_end|>\n\nHi<|eot|><|header_start|>assistant<|header_end|>\n\n"
    )


def test_llama_body_maps_max_tokens_and_refuses_stop() -> None:
    body = LlamaFamily(3).request_body(CompletionsRequest("Once", CommonParams(max_tokens=7, temperature=0.4,
                                                                               top_p=0.8)))
    assert body == {"prompt": "Once", "max_gen_len": 7, "temperature": 0.2, "top_p": 0.8}
    with pytest.raises(InvalidRequest, match="stop is not supported"):
        LlamaFamily(3).request_body(CompletionsRequest("Once", CommonParams(stop=["."])))


def test_embedding_bodies_and_titans_one_text_rule() -> None:
    assert CohereEmbedFamily().request_body(EmbeddingsRequest(["a", "b"])) == {
        "texts": ["a", "b"], "input_type": "search_document"}
    assert TitanEmbedFamily().request_body(EmbeddingsRequest(["a"])) == {"inputText": "a"}
    with pytest.raises(InvalidRequest, match="one text per call"):
        TitanEmbedFamily().request_body(EmbeddingsRequest(["a", "b"]))


def test_route_type_the_family_lacks_is_refused_before_any_call() -> None:
    target = Target("amazon-bedrock", "anthropic.claude-3-haiku-20240307-v1:0", CONFIG, KEYS)
    served = r"\(Anthropic Claude\) is served by Amazon Bedrock for llm/v1/chat, llm/v1/completions only"
    with pytest.raises(InvalidRequest, match=served):
        provider.build_request(target, EmbeddingsRequest(["x"]))
    with pytest.raises(InvalidRequest, match="llm/v1/embeddings only"):
        provider.build_request(Target("amazon-bedrock", "cohere.embed-english-v3", CONFIG, KEYS), CHAT)


# ---------------------------------------------------------------- answers and usage


def test_anthropic_answer_reuses_anthropic_parsing_with_the_bedrock_model_id() -> None:
    data = {"id": "msg_1", "model": "claude-3-haiku", "content": [{"type": "text", "text": "4"}],
            "stop_reason": "max_tokens", "usage": {"input_tokens": 9, "output_tokens": 1}}
    response = AnthropicFamily().parse(CHAT, data, context(model="anthropic.claude-3-haiku-20240307-v1:0"))
    assert isinstance(response, ChatResponse)
    assert (response.model, response.id) == ("anthropic.claude-3-haiku-20240307-v1:0", "msg_1")
    assert (response.choices[0].message.content, response.choices[0].finish_reason) == ("4", "length")
    assert response.usage == Usage(9, 1, 10)


def test_cohere_answer_without_usage_takes_bedrocks_token_headers() -> None:
    data = {"response_id": "r1", "text": "4", "generation_id": "g1", "finish_reason": "COMPLETE"}
    response = CohereChatFamily().parse(CHAT, data, context(header_usage=Usage(11, 2)))
    assert isinstance(response, ChatResponse)
    assert (response.id, response.choices[0].finish_reason, response.usage) == ("r1", "stop", Usage(11, 2))


def test_answer_without_any_usage_is_estimated() -> None:
    data = {"response_id": "r1", "text": "four", "finish_reason": "MAX_TOKENS"}
    response = CohereChatFamily().parse(CompletionsRequest("2+2"), data, context())
    assert isinstance(response, CompletionsResponse)
    assert response.choices[0].finish_reason == "length"
    assert response.usage.estimated and response.usage.input_tokens and response.usage.output_tokens


def test_cohere_error_finish_reason_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError, match="reported an error"):
        CohereChatFamily().parse(CHAT, {"text": "", "finish_reason": "ERROR"}, context())


def test_titan_answer_counts_and_reasons() -> None:
    data = {"inputTextTokenCount": 5, "results": [{"tokenCount": 3, "outputText": "Hi.", "completionReason":
                                                   "CONTENT_FILTERED"}]}
    response = TitanTextFamily().parse(CompletionsRequest("x"), data, context(request_id="req-1"))
    assert isinstance(response, CompletionsResponse)
    assert (response.choices[0].text, response.choices[0].finish_reason) == ("Hi.", "content_filter")
    assert (response.usage, response.id) == (Usage(5, 3), "req-1")


def test_llama_answer_counts_and_reasons() -> None:
    data = {"generation": "4", "prompt_token_count": 20, "generation_token_count": 1, "stop_reason": "length"}
    response = LlamaFamily(3).parse(CHAT, data, context())
    assert isinstance(response, ChatResponse)
    assert (response.choices[0].message.content, response.choices[0].finish_reason) == ("4", "length")
    assert response.usage == Usage(20, 1)


def test_embedding_answers() -> None:
    cohere = CohereEmbedFamily().parse(EmbeddingsRequest(["a", "b"]), {"embeddings": [[0.1], [0.2]]},
                                       context(header_usage=Usage(2, 0)))
    assert isinstance(cohere, EmbeddingsResponse)
    assert (cohere.embeddings, cohere.usage) == ([[0.1], [0.2]], Usage(2, 0))
    by_type = CohereEmbedFamily().parse(EmbeddingsRequest(["a"]), {"embeddings": {"float": [[1.0]]}}, context())
    assert by_type.embeddings == [[1.0]] and by_type.usage.estimated  # type: ignore[union-attr]
    titan = TitanEmbedFamily().parse(EmbeddingsRequest(["a"]), {"embedding": [0.5], "inputTextTokenCount": 1},
                                     context())
    assert titan.usage == Usage(1, 0)  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="expected 2 embeddings"):
        CohereEmbedFamily().parse(EmbeddingsRequest(["a", "b"]), {"embeddings": [[0.1]]}, context())


@pytest.mark.parametrize(
    ("family", "body"),
    [(AnthropicFamily(), {"id": "x"}), (CohereChatFamily(), {"id": "x"}), (TitanTextFamily(), {"results": []}),
     (LlamaFamily(3), {"generation": None})],
)
def test_answers_missing_their_text_are_unreadable(family: Any, body: dict[str, Any]) -> None:
    with pytest.raises((KeyError, TypeError)):
        family.parse(CHAT, body, context())


def test_header_usage_reads_bedrocks_count_headers() -> None:
    assert header_usage({"x-amzn-bedrock-input-token-count": "12", "X-Amzn-Bedrock-Output-Token-Count": "3"}) == (
        Usage(12, 3))
    assert header_usage({}) is None


# ---------------------------------------------------------------- the signed request


def test_request_is_signed_with_sigv4_for_bedrock_over_the_exact_body_and_path() -> None:
    model = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"
    secrets = Secrets({**KEYS, "aws_session_token": "token-abc"})
    target = Target("amazon-bedrock", model, {**CONFIG, "bedrock_api_base": "http://127.0.0.1:9999"}, secrets)
    request = provider.build_request(target, CHAT)
    assert request.url == ("http://127.0.0.1:9999/model/arn:aws:bedrock:us-east-1:123456789012:inference-profile"
                           "%2Fus.anthropic.claude-3-haiku-20240307-v1:0/invoke")
    headers = request.headers
    assert headers["Content-Type"] == headers["Accept"] == "application/json"
    assert headers["X-Amz-Security-Token"] == "token-abc"
    assert headers["Authorization"].startswith(
        f"AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE000000000/{headers['X-Amz-Date'][:8]}/us-east-1/bedrock/aws4_request, "
        "SignedHeaders=accept;content-type;host;x-amz-date;x-amz-security-token, Signature=")
    # Recomputed independently over the bytes the client will send (orjson, like the pooled client).
    import orjson

    check = AWSRequest(method="POST", url=request.url, data=orjson.dumps(request.json),
                       headers={k: v for k, v in headers.items() if k != "Authorization"})
    check.context["timestamp"] = headers["X-Amz-Date"]
    signer = SigV4Auth(Credentials(KEYS["aws_access_key_id"], KEYS["aws_secret_access_key"], "token-abc"),
                       "bedrock", "us-east-1")
    signature = signer.signature(signer.string_to_sign(check, signer.canonical_request(check)), check)
    assert headers["Authorization"].endswith(f"Signature={signature}")
    assert KEYS["aws_secret_access_key"] not in repr(request)


def test_stream_request_goes_to_invoke_with_response_stream() -> None:
    target = Target("amazon-bedrock", "meta.llama3-8b-instruct-v1:0", CONFIG, KEYS)
    request = provider.build_stream_request(target, CHAT)
    assert request.url == "https://bedrock-runtime.us-east-1.amazonaws.com/model/meta.llama3-8b-instruct-v1:0/" \
                          "invoke-with-response-stream"
    assert request.headers["X-Amzn-Bedrock-Accept"] == "application/json"
    assert "X-Amz-Security-Token" not in request.headers
    with pytest.raises(InvalidRequest):
        provider.build_stream_request(Target("amazon-bedrock", "cohere.embed-english-v3", CONFIG, KEYS),
                                      EmbeddingsRequest(["x"]))


def test_a_bedrock_api_key_is_a_bearer_token_and_keys_take_precedence() -> None:
    target = Target("amazon-bedrock", "meta.llama3-8b-instruct-v1:0", CONFIG, Secrets({"aws_bearer_token": "ABSKxyz"}))
    assert provider.build_request(target, CHAT).headers["Authorization"] == "Bearer ABSKxyz"
    both = Target("amazon-bedrock", "meta.llama3-8b-instruct-v1:0", CONFIG,
                  Secrets({**KEYS, "aws_bearer_token": "ABSKxyz"}))
    assert provider.build_request(both, CHAT).headers["Authorization"].startswith("AWS4-HMAC-SHA256 ")


def test_half_an_access_key_fails_the_call_as_an_auth_failure() -> None:
    target = Target("amazon-bedrock", "meta.llama3-8b-instruct-v1:0", CONFIG,
                    Secrets({"aws_secret_access_key": "only-the-secret"}))
    with pytest.raises(UpstreamError, match="aws_access_key_id is not set") as caught:
        provider.build_request(target, CHAT)
    assert caught.value.code == "UPSTREAM_AUTH_FAILED"
    assert "only-the-secret" not in caught.value.message


def test_invoke_url_escapes_only_what_the_client_would() -> None:
    settings = BedrockSettings.from_config(CONFIG)
    assert invoke_url(settings, "cohere.command-r-v1:0", stream=False) == (
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/cohere.command-r-v1:0/invoke")
    assert invoke_url(settings, "a/b c", stream=True).endswith("/model/a%2Fb%20c/invoke-with-response-stream")


# ---------------------------------------------------------------- errors


def vendor_error(status: int, kind: str | None, message: str = "boom", **headers: str) -> UpstreamResponse:
    if kind:
        headers["x-amzn-ErrorType"] = f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"
    return UpstreamResponse(status, headers, json.dumps({"message": message}).encode())


@pytest.mark.parametrize(
    ("status", "kind", "error_class", "status_out", "code"),
    [
        (400, "ValidationException", InvalidRequest, 400, "UPSTREAM_BAD_REQUEST"),
        (404, "ResourceNotFoundException", InvalidRequest, 400, "UPSTREAM_BAD_REQUEST"),
        (403, "AccessDeniedException", UpstreamError, 502, "UPSTREAM_AUTH_FAILED"),
        (403, "UnrecognizedClientException", UpstreamError, 502, "UPSTREAM_AUTH_FAILED"),
        (403, "InvalidSignatureException", UpstreamError, 502, "UPSTREAM_AUTH_FAILED"),
        (429, "ThrottlingException", UpstreamError, 502, "UPSTREAM_RATE_LIMITED"),
        (400, "ServiceQuotaExceededException", UpstreamError, 502, "UPSTREAM_RATE_LIMITED"),
        (429, "ModelNotReadyException", UpstreamError, 502, "UPSTREAM_ERROR"),
        (408, "ModelTimeoutException", UpstreamTimeout, 504, "UPSTREAM_TIMEOUT"),
        (424, "ModelErrorException", UpstreamError, 502, "UPSTREAM_ERROR"),
        (500, "InternalServerException", UpstreamError, 502, "UPSTREAM_ERROR"),
        (503, "ServiceUnavailableException", UpstreamError, 502, "UPSTREAM_ERROR"),
        (502, None, UpstreamError, 502, "UPSTREAM_ERROR"),
    ],
)
def test_errors_map_by_bedrock_error_type(status: int, kind: str | None, error_class: type, status_out: int,
                                          code: str) -> None:
    error = provider.map_error(Target("amazon-bedrock", "m", CONFIG, KEYS), vendor_error(status, kind))
    assert type(error) is error_class
    assert (error.status, error.code) == (status_out, code)


def test_auth_failures_say_nothing_bedrock_said_and_messages_lose_arns_and_secrets() -> None:
    target = Target("amazon-bedrock", "m", CONFIG, KEYS)
    denied = provider.map_error(target, vendor_error(
        403, "AccessDeniedException", "User: arn:aws:iam::123456789012:user/ci is not authorized"))
    assert "123456789012" not in denied.message and "ci" not in denied.message.split()
    bad = provider.map_error(target, vendor_error(
        400, "ValidationException",
        f"Invalid model arn:aws:bedrock:us-east-1:123456789012:custom-model/x for {KEYS['aws_access_key_id']}"))
    assert bad.message.startswith("The upstream provider rejected the request: Invalid model [REDACTED-ARN]")
    assert KEYS["aws_access_key_id"] not in bad.message and "123456789012" not in bad.message


def test_throttling_carries_retry_after() -> None:
    error = provider.map_error(Target("amazon-bedrock", "m", CONFIG, KEYS),
                               vendor_error(429, "ThrottlingException", **{"Retry-After": "3"}))
    assert error.retry_after == 3


# ---------------------------------------------------------------- the event stream


def frames(*events: dict[str, Any]) -> bytes:
    return b"".join(chunk_frame(event) for event in events)


ANTHROPIC_EVENTS = [
    {"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 7, "output_tokens": 1}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}},
    {"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 7, "outputTokenCount": 2}},
]


def parse_all(parser: BedrockStreamParser, wire: bytes, step: int = 1) -> list[StreamChunk]:
    chunks: list[StreamChunk] = []
    for i in range(0, len(wire), step):
        chunks += parser.feed(wire[i : i + step])
    return chunks + parser.close()


def parser_for(model: str, request: ChatRequest | CompletionsRequest = CHAT) -> BedrockStreamParser:
    stream_parser = provider.stream_parser(Target("amazon-bedrock", model, CONFIG, KEYS), request)
    assert isinstance(stream_parser, BedrockStreamParser)
    return stream_parser


def test_event_stream_split_anywhere_yields_text_finish_and_metrics_usage() -> None:
    chunks = parse_all(parser_for("anthropic.claude-3-haiku-20240307-v1:0"), frames(*ANTHROPIC_EVENTS))
    deltas = [d for c in chunks for d in c.deltas]
    assert deltas[0].role == "assistant" and chunks[0].id == "msg_1"
    assert "".join(d.text for d in deltas) == "Hello"
    assert [d.finish_reason for d in deltas if d.finish_reason] == ["stop"]
    assert [c.usage for c in chunks if c.usage] == [Usage(7, 2)]
    assert all(c.model == "anthropic.claude-3-haiku-20240307-v1:0" for c in chunks)


@pytest.mark.parametrize(
    ("model", "events", "text", "finish"),
    [
        ("cohere.command-r-v1:0", [
            {"is_finished": False, "event_type": "stream-start", "generation_id": "g"},
            {"is_finished": False, "event_type": "text-generation", "text": "Hi"},
            {"is_finished": True, "event_type": "stream-end", "finish_reason": "MAX_TOKENS"}], "Hi", "length"),
        ("amazon.titan-text-lite-v1", [
            {"outputText": "Hi", "index": 0, "inputTextTokenCount": 3, "totalOutputTextTokenCount": 1,
             "completionReason": None},
            {"outputText": " there", "index": 0, "totalOutputTextTokenCount": 2, "completionReason": "FINISH"}],
         "Hi there", "stop"),
        ("meta.llama3-70b-instruct-v1:0", [
            {"generation": "Hi", "prompt_token_count": 3, "generation_token_count": 1, "stop_reason": None},
            {"generation": "!", "prompt_token_count": None, "generation_token_count": 2, "stop_reason": "stop"}],
         "Hi!", "stop"),
    ],
)
def test_each_familys_stream_json_and_the_familys_own_counts_without_metrics(
    model: str, events: list[dict[str, Any]], text: str, finish: str
) -> None:
    chunks = parse_all(parser_for(model), frames(*events), step=7)
    deltas = [d for c in chunks for d in c.deltas]
    assert deltas[0].role == "assistant"
    assert "".join(d.text for d in deltas) == text
    assert [d.finish_reason for d in deltas if d.finish_reason] == [finish]
    usage = [c.usage for c in chunks if c.usage]
    if model.startswith("cohere"):
        assert usage == []  # Cohere's events carry no counts: the gateway counts the stream itself
    else:
        assert usage == [Usage(3, 2)]


def test_completions_streams_carry_no_role() -> None:
    chunks = parse_all(parser_for("meta.llama3-8b-instruct-v1:0", CompletionsRequest("x")),
                       frames({"generation": "a", "stop_reason": "stop"}))
    assert [d.role for c in chunks for d in c.deltas] == [None]


def test_exception_frame_raises_after_the_chunks_before_it() -> None:
    parser = parser_for("anthropic.claude-3-haiku-20240307-v1:0")
    wire = frames(*ANTHROPIC_EVENTS[:3]) + exception_frame("modelStreamErrorException", "model crashed")
    chunks = parser.feed(wire)
    assert "".join(d.text for c in chunks for d in c.deltas) == "Hel"
    with pytest.raises(UpstreamError, match="mid-stream: modelStreamErrorException: model crashed") as caught:
        parser.close()
    assert caught.value.code == "UPSTREAM_ERROR"


@pytest.mark.parametrize(("kind", "error_class", "code"), [
    ("throttlingException", UpstreamError, "UPSTREAM_RATE_LIMITED"),
    ("validationException", InvalidRequest, "UPSTREAM_BAD_REQUEST"),
    ("internalServerException", UpstreamError, "UPSTREAM_ERROR"),
])
def test_exception_frame_first_raises_at_once_with_its_code(kind: str, error_class: type, code: str) -> None:
    with pytest.raises(error_class) as caught:
        parser_for("anthropic.claude-3-haiku-20240307-v1:0").feed(exception_frame(kind, "nope"))
    assert caught.value.code == code


def test_a_corrupt_frame_and_a_stream_ending_mid_frame_are_errors() -> None:
    wire = bytearray(chunk_frame(ANTHROPIC_EVENTS[2]))
    wire[-6] ^= 0xFF  # payload byte: the message CRC no longer matches
    with pytest.raises(Exception, match=r"(?i)checksum|crc"):
        parser_for("anthropic.claude-3-haiku-20240307-v1:0").feed(bytes(wire))
    parser = parser_for("anthropic.claude-3-haiku-20240307-v1:0")
    parser.feed(chunk_frame(ANTHROPIC_EVENTS[2])[:20])
    with pytest.raises(UpstreamUnavailable, match="middle of an event"):
        parser.close()


def test_non_chunk_events_are_skipped() -> None:
    other = event_frame({":event-type": "initial-response", ":message-type": "event"}, b"{}")
    payload = json.dumps({"bytes": base64.b64encode(b'{"type": "ping"}').decode()}).encode()
    ping = event_frame({":event-type": "chunk", ":message-type": "event"}, payload)
    assert parser_for("anthropic.claude-3-haiku-20240307-v1:0").feed(other + ping) == []


# ---------------------------------------------------------------- cached temporary credentials


def test_temporary_credentials_are_cached_refreshed_in_the_background_and_refetched_when_expired() -> None:
    import threading
    import time

    from providers.bedrock.auth import AwsCredentials, _RefreshingCredential

    issued: list[AwsCredentials] = []
    refreshed = threading.Event()
    lifetimes = iter([1000.0, 200.0, 1000.0])

    def fetch() -> tuple[AwsCredentials, float]:
        credentials = AwsCredentials(f"ASIA{len(issued)}", "secret", "token")
        issued.append(credentials)
        if len(issued) == 3:
            refreshed.set()
        return credentials, time.time() + next(lifetimes)

    cache = _RefreshingCredential(fetch, lifetime=900.0)
    first = cache.get()
    assert cache.get() is first and len(issued) == 1  # fresh: no second fetch
    cache._cached.expires_at = time.time() + 10  # type: ignore[union-attr]  # nearly expired: refetched now
    second = cache.get()
    assert second.access_key_id == "ASIA1"  # lives 200 s: inside the refresh margin (300 s)
    assert cache.get() is second  # served at once, while a background refresh runs
    assert refreshed.wait(5)
    for _ in range(50):
        if cache.get().access_key_id == "ASIA2":
            break
        time.sleep(0.01)
    assert cache.get().access_key_id == "ASIA2"
    assert "secret" not in repr(second)

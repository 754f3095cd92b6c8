"""The built-in mock provider: deterministic answers with real token counts."""

from __future__ import annotations

import math
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
    ProviderConfigError,
    RouteType,
    Target,
)
from providers.mock import MockProvider, count_tokens, embed, truncate_tokens
from providers.registry import get_provider

mock = get_provider("mock")


def chat(params: CommonParams | None = None, config: dict[str, Any] | None = None) -> ChatResponse:
    request = ChatRequest(
        [
            ChatMessage("system", "You are a pirate."),
            ChatMessage("user", "Where's the gold?"),
            ChatMessage("assistant", "Arr."),
            ChatMessage("user", "Tell me, now!"),
        ],
        params or CommonParams(),
    )
    response = mock.answer_locally(Target("mock", "mock-chat", config or {}), request)
    assert isinstance(response, ChatResponse)
    return response


def test_tokenizer_counts_words_and_punctuation() -> None:
    assert count_tokens("Hello, world!") == 4
    assert count_tokens("") == 0
    assert count_tokens("don't  stop\n") == 4  # don ' t stop
    assert truncate_tokens("Hello, big world!", 3) == "Hello, big"
    assert truncate_tokens("Hello", 5) == "Hello"


def test_chat_answers_the_last_user_message_with_counted_usage() -> None:
    response = chat()
    assert mock.needs_network is False
    [choice] = response.choices
    assert choice.message == ChatMessage("assistant", "This is a mock answer to: Tell me, now!")
    assert choice.finish_reason == "stop"
    # Prompt: "You are a pirate ." 5 + "Where ' s the gold ?" 6 + "Arr ." 2 + "Tell me , now !" 5.
    # Output: "This is a mock answer to : Tell me , now !" 12.
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (
        18,
        12,
        30,
    )
    assert response.model == "mock-chat"


def test_answers_are_deterministic() -> None:
    first, second = chat(CommonParams(n=2)), chat(CommonParams(n=2))
    assert first.choices == second.choices
    assert first.usage == second.usage
    assert first.id == second.id


def test_max_tokens_truncates_with_finish_reason_length() -> None:
    response = chat(CommonParams(max_tokens=5))
    assert response.choices[0].message.content == "This is a mock answer"
    assert response.choices[0].finish_reason == "length"
    assert response.usage.output_tokens == 5


def test_stop_sequence_cuts_before_it_with_finish_reason_stop() -> None:
    response = chat(CommonParams(stop=["zzz", "mock"], max_tokens=50))
    assert response.choices[0].message.content == "This is a "
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.output_tokens == 3


def test_n_candidates_are_counted_in_output_tokens() -> None:
    response = chat(CommonParams(n=3))
    assert [c.index for c in response.choices] == [0, 1, 2]
    assert response.usage.output_tokens == 3 * 12


def test_fixed_reply_from_config() -> None:
    response = chat(config={"reply": "Aye aye."})
    assert response.choices[0].message.content == "Aye aye."
    assert response.usage.output_tokens == 3


def test_completions_likewise() -> None:
    request = CompletionsRequest("Once upon a time", CommonParams(max_tokens=4, n=2))
    response = mock.answer_locally(Target("mock", "m"), request)
    assert isinstance(response, CompletionsResponse)
    assert [c.text for c in response.choices] == ["This is a mock"] * 2
    assert [c.finish_reason for c in response.choices] == ["length"] * 2
    assert (response.usage.input_tokens, response.usage.output_tokens) == (4, 8)


def test_embeddings_are_deterministic_unit_vectors_per_input() -> None:
    request = EmbeddingsRequest(["alpha", "beta", "alpha"])
    response = mock.answer_locally(Target("mock", "emb"), request)
    assert isinstance(response, EmbeddingsResponse)
    first, second, third = response.embeddings
    assert len(first) == 16
    assert first == third and first != second
    for vector in response.embeddings:
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-9)
    assert (response.usage.input_tokens, response.usage.output_tokens) == (3, 0)
    # Stable across processes: derived from SHA-256, not Python's salted hash().
    assert embed("alpha", 4) == pytest.approx(embed("alpha", 4))
    assert embed("alpha", 16)[:4] != embed("alpha", 4)  # normalised over its own length


def test_embedding_dimensions_from_config() -> None:
    response = mock.answer_locally(Target("mock", "emb", {"dimensions": 300}), EmbeddingsRequest(["x"]))
    assert isinstance(response, EmbeddingsResponse)
    assert len(response.embeddings[0]) == 300


@pytest.mark.parametrize("route_type", list(RouteType))
def test_config_needs_no_secrets_for_any_route_type(route_type: RouteType) -> None:
    MockProvider().validate_config(route_type=route_type, config={}, secrets={})
    MockProvider().validate_config(route_type=route_type, config={"dimensions": 8, "reply": "hi"}, secrets={})


@pytest.mark.parametrize(
    "config",
    [
        {"dimensions": 0},
        {"dimensions": "many"},
        {"dimensions": 1.5},
        {"dimensions": True},
        {"dimensions": 100000},
        {"reply": 3},
        {"temperature": 1},
    ],
)
def test_bad_config_is_refused(config: dict[str, Any]) -> None:
    with pytest.raises(ProviderConfigError):
        MockProvider().validate_config(route_type=RouteType.EMBEDDINGS, config=config, secrets={})

from __future__ import annotations

import pytest

from providers.base import Provider, ProviderConfigError
from providers.mock import MockProvider
from providers.openai import OpenAIProvider
from providers.registry import get_provider, provider_names


def test_known_providers_are_registered_by_name() -> None:
    assert provider_names() == [
        "ai21labs", "amazon-bedrock", "anthropic", "bedrock", "cohere", "databricks", "databricks-model-serving",
        "deepseek", "gemini", "groq", "huggingface-text-generation-inference", "mistral", "mlflow-model-serving",
        "mock", "mosaicml", "ollama", "openai", "openrouter", "togetherai", "vllm", "xai",
    ]
    assert isinstance(get_provider("openai"), OpenAIProvider)
    assert isinstance(get_provider("mock"), MockProvider)
    assert get_provider("openai") is get_provider("openai")


def test_unknown_provider_is_a_config_error_listing_the_known_ones() -> None:
    known = r"Unknown provider 'anthropix'.*mock, mosaicml, ollama, openai"
    with pytest.raises(ProviderConfigError, match=known) as caught:
        get_provider("anthropix")
    assert caught.value.status == 400


@pytest.mark.parametrize("name", provider_names())
def test_every_provider_declares_its_contract(name: str) -> None:
    provider = get_provider(name)
    assert isinstance(provider, Provider)
    assert provider.name == name
    assert provider.route_types
    assert not set(provider.secret_fields) & set(provider.config_fields)

"""Provider name → provider. Adding a vendor: write its module, add its class to `_PROVIDER_CLASSES`."""

from __future__ import annotations

from providers.ai21labs import AI21LabsProvider
from providers.anthropic import AnthropicProvider
from providers.base import Provider, ProviderConfigError
from providers.bedrock import AmazonBedrockProvider, BedrockProvider
from providers.cohere import CohereProvider
from providers.databricks import DatabricksModelServingProvider, DatabricksProvider
from providers.gemini import GeminiProvider
from providers.huggingface import HFTextGenerationInferenceServerProvider
from providers.mistral import MistralProvider
from providers.mlflow_serving import MlflowModelServingProvider
from providers.mock import MockProvider
from providers.mosaicml import MosaicMLProvider
from providers.openai import OpenAIProvider
from providers.openai_compatible import (
    DeepSeekProvider,
    GroqProvider,
    OllamaProvider,
    OpenRouterProvider,
    TogetherAIProvider,
    VLLMProvider,
    XAIProvider,
)

_PROVIDER_CLASSES: tuple[type[Provider], ...] = (
    OpenAIProvider,
    AnthropicProvider,
    CohereProvider,
    GeminiProvider,
    AmazonBedrockProvider,
    BedrockProvider,
    MistralProvider,
    DatabricksModelServingProvider,
    DatabricksProvider,
    MlflowModelServingProvider,
    HFTextGenerationInferenceServerProvider,
    AI21LabsProvider,
    MosaicMLProvider,
    GroqProvider,
    DeepSeekProvider,
    XAIProvider,
    OpenRouterProvider,
    TogetherAIProvider,
    OllamaProvider,
    VLLMProvider,
    MockProvider,
)

# Providers hold no per-route state, so one instance each serves every route.
_PROVIDERS: dict[str, Provider] = {cls.name: cls() for cls in _PROVIDER_CLASSES}


def get_provider(name: str) -> Provider:
    """The provider called `name`; ProviderConfigError (listing the known names) if there is none."""
    try:
        return _PROVIDERS[name]
    except KeyError:
        raise ProviderConfigError(
            f"Unknown provider '{name}' (known providers: {', '.join(provider_names())})."
        ) from None


def provider_names() -> list[str]:
    """The names of all providers, sorted."""
    return sorted(_PROVIDERS)

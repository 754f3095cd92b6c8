"""Provider name → provider. Adding a vendor: write its module, add its class to `_PROVIDER_CLASSES`."""

from __future__ import annotations

from providers.anthropic import AnthropicProvider
from providers.base import Provider, ProviderConfigError
from providers.bedrock import AmazonBedrockProvider, BedrockProvider
from providers.cohere import CohereProvider
from providers.gemini import GeminiProvider
from providers.mock import MockProvider
from providers.openai import OpenAIProvider

_PROVIDER_CLASSES: tuple[type[Provider], ...] = (
    OpenAIProvider,
    AnthropicProvider,
    CohereProvider,
    GeminiProvider,
    AmazonBedrockProvider,
    BedrockProvider,
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

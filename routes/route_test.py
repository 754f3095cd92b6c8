"""The admin's "test this route": send a tiny request through the route's provider, report the outcome."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

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
    RouteType,
    Secrets,
    StdRequest,
    StdResponse,
    Target,
    redact,
)
from providers.client import UpstreamClient, execute
from providers.registry import get_provider

from .crypto import CredentialDecryptionError
from .environments import for_environment
from .models import Environment, ProviderCredential, Route

logger = logging.getLogger(__name__)

PROBE_TEXT = "Say OK."


@dataclass(frozen=True, slots=True)
class RouteTestResult:
    ok: bool
    summary: str  # safe to show: never contains a credential


def route_target(route: Route, environment: str = Environment.PRODUCTION) -> Target:
    """The target a consumer of `environment` would reach (same rule as the serving snapshot)."""
    # A fresh query: the admin's route list prefetches credentials without their (encrypted) secrets.
    by_environment = {c.environment: c for c in ProviderCredential.objects.filter(route_id=route.pk)}
    credential = for_environment(by_environment, environment)
    secrets = Secrets(credential.secrets if credential else {})
    return Target(provider=route.provider, model=route.model_name, config=dict(route.config), secrets=secrets)


def probe_request(route_type: RouteType) -> StdRequest:
    if route_type is RouteType.CHAT:
        return ChatRequest(messages=[ChatMessage("user", PROBE_TEXT)], params=CommonParams(max_tokens=5))
    if route_type is RouteType.COMPLETIONS:
        return CompletionsRequest(prompt=PROBE_TEXT, params=CommonParams(max_tokens=5))
    return EmbeddingsRequest(inputs=[PROBE_TEXT])


def describe(response: StdResponse) -> str:
    tokens = response.usage.total_tokens
    if isinstance(response, EmbeddingsResponse):
        dims = len(response.embeddings[0]) if response.embeddings else 0
        return f"an embedding of {dims} dimensions ({tokens} tokens)"
    if isinstance(response, ChatResponse):
        text = response.choices[0].message.content if response.choices else ""
    else:
        assert isinstance(response, CompletionsResponse)
        text = response.choices[0].text if response.choices else ""
    return f"{text[:200]!r} ({tokens} tokens)"


async def _run(target: Target, request: StdRequest, seconds: float) -> StdResponse:
    client = UpstreamClient()
    try:
        return await execute(get_provider(target.provider), target, request, client=client, timeout=seconds)
    finally:
        await client.aclose()


def route_test(*, route: Route, timeout: float = 20.0) -> RouteTestResult:
    """Send one tiny request of the route's type with its production credential.

    Never raises for a failed test: every outcome is a result whose summary is safe to show (secret
    values are redacted from it even if a provider's error message let one through).
    """
    try:
        target = route_target(route)
    except CredentialDecryptionError as exc:
        return RouteTestResult(ok=False, summary=f"{route.name}: {exc}")
    try:
        response = asyncio.run(_run(target, probe_request(RouteType(route.route_type)), timeout))
    except GatewayError as exc:
        summary = f"{route.name}: {exc.status} {exc.code}: {exc.message}"
        return RouteTestResult(ok=False, summary=redact(summary, target.secrets))
    except Exception as exc:
        # A bug, not an upstream failure: keep the admin page up, put the traceback in the server log.
        logger.exception("testing route %s failed unexpectedly", route.name)
        summary = f"{route.name}: the test failed unexpectedly ({type(exc).__name__}); see the server log."
        return RouteTestResult(ok=False, summary=summary)
    return RouteTestResult(ok=True, summary=f"{route.name} answered {describe(response)}")

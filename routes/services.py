"""Writes: every state change of routes, credentials, teams, consumers, keys and grants."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from providers.base import ProviderConfigError, RouteType
from providers.registry import get_provider

from .errors import AlreadyExists, InvalidRequest
from .invalidation import config_version_bump
from .keys import generate_key
from .models import (
    NAME_VALIDATOR,
    ApiKey,
    Consumer,
    Environment,
    ProviderCredential,
    Route,
    RouteFallback,
    RouteGrant,
    Team,
)


def _validate_name(name: str, what: str) -> None:
    try:
        NAME_VALIDATOR(name)
    except ValidationError:
        raise InvalidRequest(
            f"Invalid {what} name {name!r}: use letters, digits, '.', '_' and '-' (at most 128)."
        ) from None


def provider_config_split(*, provider: str, config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Split a provider config (MLflow's keys) into its non-secret part and its secret fields."""
    vendor = get_provider(provider)
    try:
        config = vendor.normalize_config(config)
    except ProviderConfigError as exc:
        raise InvalidRequest(exc.message) from None
    secret_fields = set(vendor.secret_fields)
    plain = {k: v for k, v in config.items() if k not in secret_fields}
    secrets: dict[str, str] = {}
    for k, v in config.items():
        if k in secret_fields and v not in (None, ""):
            if not isinstance(v, str):
                raise InvalidRequest(f"Config field '{k}' must be a string.")
            secrets[k] = v
    return plain, secrets


def route_validate(*, route_type: str, provider: str, config: Mapping[str, Any], secrets: Mapping[str, str]) -> None:
    """Raise InvalidRequest unless the provider can serve this route type with this config."""
    try:
        rtype = RouteType(route_type)
    except ValueError:
        raise InvalidRequest(
            f"Invalid route_type {route_type!r}: use one of {', '.join(t.value for t in RouteType)}."
        ) from None
    try:
        get_provider(provider).validate_config(route_type=rtype, config=config, secrets=secrets)
    except ProviderConfigError as exc:
        raise InvalidRequest(exc.message) from None


@transaction.atomic
def route_create(
    *,
    name: str,
    route_type: str,
    provider: str,
    model_name: str,
    config: Mapping[str, Any] | None = None,
    environment: str = Environment.PRODUCTION,
    enabled: bool = True,
    max_candidates: int = 5,
    description: str = "",
    production_only: bool = False,
    default_max_tokens: int | None = None,
    max_retries: int = 2,
    timeouts: RouteTimeouts | None = None,
) -> Route:
    """Create a route from MLflow-style config; secret fields go to an encrypted credential."""
    _validate_name(name, "route")
    if not model_name or not isinstance(model_name, str):
        raise InvalidRequest("The model name is required.")
    if not 1 <= max_candidates <= 128:
        raise InvalidRequest("max_candidates must be from 1 to 128.")
    if not 0 <= max_retries <= 10:
        raise InvalidRequest("max_retries must be from 0 to 10.")
    timeouts = timeouts or RouteTimeouts()
    plain, secrets = provider_config_split(provider=provider, config=dict(config or {}))
    route_validate(route_type=route_type, provider=provider, config=plain, secrets=secrets)
    if Route.objects.filter(name=name).exists():
        raise AlreadyExists(f"Route '{name}' already exists.")
    try:
        with transaction.atomic():
            route = Route.objects.create(
                name=name, route_type=route_type, provider=provider, model_name=model_name,
                config=plain, enabled=enabled, max_candidates=max_candidates, description=description,
                production_only=production_only, default_max_tokens=default_max_tokens,
                max_retries=max_retries, connect_timeout_seconds=timeouts.connect,
                read_timeout_seconds=timeouts.read, total_timeout_seconds=timeouts.total,
            )
    except IntegrityError:
        raise AlreadyExists(f"Route '{name}' already exists.") from None
    if secrets:
        ProviderCredential.objects.create(route=route, environment=environment, secrets=secrets)
    return route


def route_fallbacks_set(*, route: Route, fallbacks: Iterable[Route]) -> None:
    """Replace the route's fallbacks with `fallbacks`, tried in this order (same route type only)."""
    fallbacks = list(fallbacks)
    for fallback in fallbacks:
        if fallback.pk == route.pk or fallback.route_type != route.route_type:
            raise InvalidRequest(f"Fallback '{fallback.name}' must be another {route.route_type} route.")
    with transaction.atomic():
        RouteFallback.objects.filter(route=route).delete()
        RouteFallback.objects.bulk_create(
            RouteFallback(route=route, fallback=f, position=i) for i, f in enumerate(fallbacks)
        )
    # bulk writes send no signals: move the config version ourselves
    transaction.on_commit(config_version_bump)


def route_delete(*, route: Route) -> None:
    route.delete()


def route_set_enabled(*, routes: Iterable[Route], enabled: bool) -> int:
    count = 0
    for route in routes:
        if route.enabled != enabled:
            route.enabled = enabled
            route.save(update_fields=["enabled", "updated_at"])
            count += 1
    return count


def credential_set(*, route: Route, environment: str, secrets: Mapping[str, str]) -> ProviderCredential:
    """Store (replacing) the secret fields of a route's credential for one environment."""
    credential, _ = ProviderCredential.objects.get_or_create(route=route, environment=environment)
    credential.secrets = dict(secrets)
    credential.save()
    return credential


def team_get_or_create(*, name: str) -> Team:
    _validate_name(name, "team")
    team, _ = Team.objects.get_or_create(name=name)
    return team


def consumer_get_or_create(
    *, team: Team, name: str, kind: str = Consumer.Kind.PERSON, environment: str = Environment.DEVELOPMENT
) -> Consumer:
    _validate_name(name, "consumer")
    consumer, created = Consumer.objects.get_or_create(
        team=team, name=name, defaults={"kind": kind, "environment": environment}
    )
    if not created and (consumer.kind != kind or consumer.environment != environment):
        consumer.kind, consumer.environment = kind, environment
        consumer.save(update_fields=["kind", "environment"])
    return consumer


@dataclass(frozen=True, slots=True)
class RouteTimeouts:
    """Per-route upstream timeouts in seconds; None uses the GATEWAY_UPSTREAM_* default."""

    connect: float | None = None
    read: float | None = None
    total: float | None = None


@dataclass(frozen=True, slots=True)
class IssuedKey:
    api_key: ApiKey
    plaintext: str  # show once; it is not stored


def api_key_issue(
    *, consumer: Consumer, name: str = "", is_admin: bool = False, expires_at: datetime | None = None
) -> IssuedKey:
    """Create a key for a consumer; the plaintext is returned once and only its hash is stored."""
    new = generate_key()
    api_key = ApiKey.objects.create(
        consumer=consumer, name=name, prefix=new.prefix, hashed_key=new.hashed,
        is_admin=is_admin, expires_at=expires_at,
    )
    return IssuedKey(api_key=api_key, plaintext=new.plaintext)


def api_key_revoke(*, api_keys: Iterable[ApiKey]) -> int:
    now = timezone.now()
    count = 0
    for key in api_keys:
        if key.revoked_at is None:
            key.revoked_at = now
            key.save(update_fields=["revoked_at"])
            count += 1
    return count


def route_grant(*, route: Route, team: Team | None = None, consumer: Consumer | None = None) -> RouteGrant:
    if (team is None) == (consumer is None):
        raise InvalidRequest("A grant goes to exactly one of a team or a consumer.")
    grant, _ = RouteGrant.objects.get_or_create(route=route, team=team, consumer=consumer)
    return grant

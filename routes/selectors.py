"""Reads: key resolution, what a caller may see, and the data the serving snapshot is built from."""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.utils import timezone

from .keys import hash_key
from .models import ApiKey, ProviderCredential, Route, RouteGrant
from .principal import PRODUCTION, Principal


def principal_from_api_key(api_key: ApiKey) -> Principal:
    consumer = api_key.consumer
    return Principal(
        key_id=api_key.pk,
        key_prefix=api_key.prefix,
        consumer_id=consumer.pk,
        consumer_name=consumer.name,
        consumer_kind=consumer.kind,
        team_id=consumer.team_id,
        team_name=consumer.team.name,
        environment=consumer.environment,
        is_admin=api_key.is_admin,
        expires_at=api_key.expires_at,
    )


def usable_api_keys() -> QuerySet[ApiKey]:
    """Keys that may authenticate now: not revoked, not expired, consumer active."""
    return ApiKey.objects.select_related("consumer__team").filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()),
        revoked_at__isnull=True,
        consumer__is_active=True,
    )


def principal_for_key(plaintext: str) -> Principal | None:
    """The principal behind a presented key, or None for an unknown, revoked or expired one."""
    api_key = usable_api_keys().filter(hashed_key=hash_key(plaintext)).first()
    return principal_from_api_key(api_key) if api_key else None


def routes_visible_to(principal: Principal) -> QuerySet[Route]:
    """Routes the caller may query (and so see in listings)."""
    routes = Route.objects.all()
    if principal.environment != PRODUCTION:
        routes = routes.filter(production_only=False)
    if principal.is_admin:
        return routes
    return routes.filter(
        Q(grants__team_id=principal.team_id) | Q(grants__consumer_id=principal.consumer_id)
    ).distinct()


def route_grants() -> QuerySet[RouteGrant]:
    return RouteGrant.objects.all()


def route_credentials() -> QuerySet[ProviderCredential]:
    return ProviderCredential.objects.all()

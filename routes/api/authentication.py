"""DRF authentication with gateway keys (`Authorization: Bearer <key>`), for the management API."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from ..audit import set_actor
from ..keys import parse_bearer
from ..principal import Principal
from ..selectors import principal_for_key


class GatewayKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Principal, None] | None:
        header = request.META.get("HTTP_AUTHORIZATION")
        if not header:
            return None
        key = parse_bearer(header)
        principal = principal_for_key(key) if key else None
        if principal is None:
            raise exceptions.AuthenticationFailed("Invalid, revoked or expired gateway key.")
        set_actor(f"key:gw-{principal.key_prefix} ({principal.team_name}/{principal.consumer_name})")
        return principal, None

    def authenticate_header(self, request: Any) -> str:
        return 'Bearer realm="gateway"'


class IsAdminKey:
    """Permission: the caller's gateway key is an admin key."""

    message = "This operation needs an admin gateway key."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, Principal) and request.user.is_admin

    def has_object_permission(self, request: Request, view: Any, obj: Any) -> bool:
        return self.has_permission(request, view)


class GatewayKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """Tells drf-spectacular how GatewayKeyAuthentication authenticates."""

    target_class = "routes.api.authentication.GatewayKeyAuthentication"
    name = "gatewayKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "A gateway key: gw-<prefix>_<secret>."}

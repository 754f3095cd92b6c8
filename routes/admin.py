"""The platform team's main tool: routes with their credentials and grants, teams, consumers, keys."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters
from django_ratelimit.decorators import ratelimit

from providers.base import RouteType

from . import services
from .admin_forms import (
    ApiKeyAdminForm,
    CredentialAdminForm,
    CredentialInlineFormSet,
    RouteAdminForm,
    masked_field_names,
)
from .models import (
    ApiKey,
    AuditEntry,
    Consumer,
    ProviderCredential,
    Route,
    RouteFallback,
    RouteGrant,
    RouteSplit,
    Team,
)
from .route_test import route_test

EXAMPLE_TEXT = "Hello!"
_CHAT_BODY: dict[str, Any] = {"messages": [{"role": "user", "content": EXAMPLE_TEXT}]}
# Minimal request bodies per route type: MLflow 2.5's schemas, and the OpenAI-shaped ones that the
# deployments API and /v1 take.
_MLFLOW_BODIES: dict[RouteType, dict[str, Any]] = {
    RouteType.CHAT: _CHAT_BODY,
    RouteType.COMPLETIONS: {"prompt": EXAMPLE_TEXT},
    RouteType.EMBEDDINGS: {"text": EXAMPLE_TEXT},
}
_OPENAI_BODIES: dict[RouteType, dict[str, Any]] = {
    RouteType.CHAT: _CHAT_BODY,
    RouteType.COMPLETIONS: {"prompt": EXAMPLE_TEXT},
    RouteType.EMBEDDINGS: {"input": EXAMPLE_TEXT},
}
_OPENAI_PATHS: dict[RouteType, str] = {
    RouteType.CHAT: "chat/completions",
    RouteType.COMPLETIONS: "completions",
    RouteType.EMBEDDINGS: "embeddings",
}


@dataclass(frozen=True, slots=True)
class InvocationExample:
    """How a consumer calls a route through one API family: the URL and a ready-to-paste curl."""

    api: str
    url: str
    body: dict[str, Any]

    @property
    def curl(self) -> str:
        return (
            f"curl -X POST {self.url} \\\n"
            '  -H "Authorization: Bearer $GATEWAY_KEY" \\\n'
            '  -H "Content-Type: application/json" \\\n'
            f"  -d '{json.dumps(self.body)}'"
        )


def invocation_examples(route: Route, base_url: str) -> list[InvocationExample]:
    """The route's invocation URL in each API family, with a minimal body of the route's type."""
    base = base_url.rstrip("/")
    try:
        rtype = RouteType(route.route_type)
    except ValueError:
        return []
    name, openai_body, openai_path = route.name, _OPENAI_BODIES[rtype], _OPENAI_PATHS[rtype]
    return [
        InvocationExample("MLflow AI Gateway", f"{base}/gateway/{name}/invocations", _MLFLOW_BODIES[rtype]),
        InvocationExample("MLflow deployments", f"{base}/endpoints/{name}/invocations", openai_body),
        InvocationExample("OpenAI-compatible", f"{base}/v1/{openai_path}", {"model": name} | openai_body),
    ]


def _key_issue_rate(group: str, request: HttpRequest) -> str:
    rate: str = settings.KEY_ISSUE_RATE
    return rate


def gateway_base_url(request: HttpRequest) -> str:
    configured: str = settings.GATEWAY["PUBLIC_URL"]
    return configured.rstrip("/") if configured else request.build_absolute_uri("/").rstrip("/")


class CredentialInline(admin.StackedInline):
    model = ProviderCredential
    form = CredentialAdminForm
    formset = CredentialInlineFormSet
    extra = 0
    fields = ["environment", "stored", "api_key", "other_secrets", "updated_at"]
    readonly_fields = ["stored", "updated_at"]
    verbose_name = "credential"

    @admin.display(description="Stored secret fields")
    def stored(self, obj: ProviderCredential) -> str:
        return masked_field_names(obj.secrets if obj.pk else None)


class RouteGrantInline(admin.TabularInline):
    model = RouteGrant
    extra = 0
    autocomplete_fields = ["team", "consumer"]
    fields = ["team", "consumer", "created_at"]
    readonly_fields = ["created_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[RouteGrant]:
        return super().get_queryset(request).select_related("team", "consumer__team")


class RouteFallbackInline(admin.TabularInline):
    model = RouteFallback
    fk_name = "route"
    extra = 0
    autocomplete_fields = ["fallback"]
    fields = ["position", "fallback"]
    verbose_name = "fallback (tried in order when this route fails after its retries)"
    verbose_name_plural = "fallbacks (tried in order when this route fails after its retries)"


class RouteSplitInline(admin.TabularInline):
    model = RouteSplit
    fk_name = "route"
    extra = 0
    autocomplete_fields = ["target"]
    fields = ["target", "weight"]
    verbose_name = "traffic split target"
    verbose_name_plural = "traffic split (this route keeps its own 'split weight'; each target takes its weight)"


@admin.register(Route)
class RouteAdmin(admin.ModelAdmin):
    form = RouteAdminForm
    inlines = [CredentialInline, RouteGrantInline, RouteFallbackInline, RouteSplitInline]
    fieldsets = [
        (None, {"fields": ["name", "route_type", "provider", "model_name", "config", "enabled", "description"]}),
        ("Access and requests", {"fields": ["production_only", "max_candidates", "default_max_tokens"]}),
        ("Resilience", {
            "fields": ["connect_timeout_seconds", "read_timeout_seconds", "total_timeout_seconds", "max_retries",
                       "split_weight"],
            "description": "Blank timeouts use the GATEWAY_UPSTREAM_* defaults. Retries cover connection errors, "
                           "429 and 5xx; then the fallbacks below are tried in order.",
        }),
    ]
    list_display = ["name", "route_type", "provider", "model_name", "enabled", "production_only", "environments",
                    "updated_at"]
    list_filter = ["route_type", "provider", "enabled", "production_only"]
    search_fields = ["name", "model_name", "description"]
    actions = ["test_routes", "disable_routes", "enable_routes"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Route]:
        # Environments only: listing routes needs no secret decrypted.
        environments = ProviderCredential.objects.only("route", "environment")
        return super().get_queryset(request).prefetch_related(Prefetch("credentials", queryset=environments))

    # The posted form carries new secrets: keep them out of error reports (the 500 email, the debug page).
    @method_decorator(sensitive_post_parameters())
    def changeform_view(
        self, request: HttpRequest, object_id: str | None = None, form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        return super().changeform_view(request, object_id, form_url, extra_context)

    def render_change_form(
        self, request: HttpRequest, context: dict[str, Any], add: bool = False, change: bool = False,
        form_url: str = "", obj: Route | None = None,
    ) -> HttpResponse:
        if obj is not None and obj.pk:
            context["invocation_examples"] = invocation_examples(obj, gateway_base_url(request))
        return super().render_change_form(request, context, add, change, form_url, obj)

    @admin.display(description="Credentials")
    def environments(self, route: Route) -> str:
        return ", ".join(sorted(c.environment for c in route.credentials.all())) or "none"

    @admin.action(description="Test selected routes (send a tiny request)")
    def test_routes(self, request: HttpRequest, queryset: QuerySet[Route]) -> None:
        for route in queryset:
            result = route_test(route=route)
            self.message_user(request, result.summary, messages.SUCCESS if result.ok else messages.ERROR)

    @admin.action(description="Disable selected routes")
    def disable_routes(self, request: HttpRequest, queryset: QuerySet[Route]) -> None:
        count = services.route_set_enabled(routes=queryset, enabled=False)
        self.message_user(request, f"Disabled {count} route(s).", messages.SUCCESS)

    @admin.action(description="Enable selected routes")
    def enable_routes(self, request: HttpRequest, queryset: QuerySet[Route]) -> None:
        count = services.route_set_enabled(routes=queryset, enabled=True)
        self.message_user(request, f"Enabled {count} route(s).", messages.SUCCESS)


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]
    search_fields = ["name", "description"]


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ["prefix", "name", "is_admin", "created_at", "last_used_at", "expires_at", "revoked_at"]
    readonly_fields = ["prefix", "name", "is_admin", "created_at", "last_used_at", "expires_at", "revoked_at"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # keys are issued from the API key page, which shows the new key once


@admin.register(Consumer)
class ConsumerAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "kind", "environment", "is_active", "created_at"]
    list_filter = ["kind", "environment", "is_active", "team"]
    list_select_related = ["team"]
    search_fields = ["name", "email", "team__name"]
    autocomplete_fields = ["team"]
    inlines = [ApiKeyInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Consumer]:
        # str(consumer) names its team: the changelist, the autocomplete and the key pages show it.
        return super().get_queryset(request).select_related("team")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyAdminForm
    list_display = [
        "__str__", "consumer", "name", "is_admin", "created_at", "last_used_at", "expires_at", "revoked_at",
    ]
    list_filter = ["is_admin", ("revoked_at", admin.EmptyFieldListFilter), "consumer__team", "consumer__kind"]
    list_select_related = ["consumer__team"]
    search_fields = ["prefix", "name", "consumer__name", "consumer__team__name"]
    autocomplete_fields = ["consumer"]
    actions = ["revoke_keys"]

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("consumer", "name", "is_admin", "expires_at")
        return (
            "prefix", "consumer", "name", "is_admin", "created_at", "last_used_at", "expires_at", "revoked_at",
        )

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        if obj is None:
            return []
        return ["prefix", "consumer", "created_at", "last_used_at", "revoked_at"]

    @method_decorator(ratelimit(group="key-issue", key="user_or_ip", rate=_key_issue_rate, method="POST", block=True))
    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
                 ) -> HttpResponse:
        return super().add_view(request, form_url, extra_context)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        issued = services.api_key_issue(
            consumer=obj.consumer, name=obj.name, is_admin=obj.is_admin, expires_at=obj.expires_at
        )
        saved = issued.api_key
        # The admin logs and redirects with the object it built: make it the saved row.
        obj.pk, obj.prefix, obj.hashed_key = saved.pk, saved.prefix, saved.hashed_key
        obj.created_at = saved.created_at
        obj._state.adding, obj._state.db = False, saved._state.db
        request._issued_key_plaintext = issued.plaintext  # type: ignore[attr-defined]

    def response_add(
        self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None
    ) -> HttpResponse:
        plaintext = getattr(request, "_issued_key_plaintext", None)
        if plaintext is None:
            return super().response_add(request, obj, post_url_continue)
        context = {**self.admin_site.each_context(request), "api_key": obj, "plaintext": plaintext,
                   "opts": self.model._meta, "title": "Your new gateway key"}
        response = TemplateResponse(request, "admin/routes/apikey/issued.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected keys")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        count = services.api_key_revoke(api_keys=queryset)
        self.message_user(
            request,
            f"Revoked {count} key(s); every server stops accepting them within 2 seconds.",
            messages.SUCCESS,
        )


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """The audit log: visible to admins, never editable (rows are written only by `routes.audit`)."""

    list_display = ["created_at", "actor", "action", "object_type", "object_repr", "changed_fields"]
    list_filter = ["action", "object_type"]
    search_fields = ["actor", "object_repr", "object_id"]
    date_hierarchy = "created_at"
    fields = ["created_at", "actor", "action", "object_type", "object_id", "object_repr", "changes"]
    readonly_fields = ["created_at", "actor", "action", "object_type", "object_id", "object_repr", "changes"]

    @admin.display(description="Changed")
    def changed_fields(self, entry: AuditEntry) -> str:
        return ", ".join(sorted(entry.changes)) if isinstance(entry.changes, dict) else ""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

"""The platform team's main tool: routes with their credentials and grants, teams, consumers, keys."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from . import services
from .admin_forms import CredentialAdminForm, RouteAdminForm
from .models import ApiKey, Consumer, ProviderCredential, Route, RouteGrant, Team
from .route_test import route_test


class CredentialInline(admin.StackedInline):
    model = ProviderCredential
    form = CredentialAdminForm
    extra = 0
    fields = ["environment", "stored", "api_key", "other_secrets", "updated_at"]
    readonly_fields = ["stored", "updated_at"]
    verbose_name = "credential"

    @admin.display(description="Stored secret fields")
    def stored(self, obj: ProviderCredential) -> str:
        names = sorted(obj.secrets or {}) if obj.pk else []
        return ", ".join(f"{n}: ••••••••" for n in names) or "nothing stored yet"


class RouteGrantInline(admin.TabularInline):
    model = RouteGrant
    extra = 0
    autocomplete_fields = ["team", "consumer"]
    fields = ["team", "consumer", "created_at"]
    readonly_fields = ["created_at"]


@admin.register(Route)
class RouteAdmin(admin.ModelAdmin):
    form = RouteAdminForm
    inlines = [CredentialInline, RouteGrantInline]
    list_display = ["name", "route_type", "provider", "model_name", "enabled", "environments", "updated_at"]
    list_filter = ["route_type", "provider", "enabled"]
    search_fields = ["name", "model_name", "description"]
    actions = ["test_routes", "disable_routes", "enable_routes"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Route]:
        return super().get_queryset(request).prefetch_related("credentials")

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
        self.message_user(request, f"Disabled {count} route(s).")

    @admin.action(description="Enable selected routes")
    def enable_routes(self, request: HttpRequest, queryset: QuerySet[Route]) -> None:
        count = services.route_set_enabled(routes=queryset, enabled=True)
        self.message_user(request, f"Enabled {count} route(s).")


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
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # keys are issued from the API key page, which shows the new key once


@admin.register(Consumer)
class ConsumerAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "kind", "environment", "is_active", "created_at"]
    list_filter = ["kind", "environment", "is_active", "team"]
    search_fields = ["name", "email", "team__name"]
    autocomplete_fields = ["team"]
    inlines = [ApiKeyInline]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["__str__", "consumer", "name", "is_admin", "created_at", "last_used_at", "expires_at", "revoked_at"]
    list_filter = ["is_admin", ("revoked_at", admin.EmptyFieldListFilter), "consumer__team", "consumer__kind"]
    search_fields = ["prefix", "name", "consumer__name", "consumer__team__name"]
    autocomplete_fields = ["consumer"]
    actions = ["revoke_keys"]

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        if obj is None:
            return ["consumer", "name", "is_admin", "expires_at"]
        return ["prefix", "consumer", "name", "is_admin", "created_at", "last_used_at", "expires_at", "revoked_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        if obj is None:
            return []
        return ["prefix", "consumer", "created_at", "last_used_at", "revoked_at"]

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        issued = services.api_key_issue(
            consumer=obj.consumer, name=obj.name, is_admin=obj.is_admin, expires_at=obj.expires_at
        )
        saved = issued.api_key
        # The admin logs and redirects with the object it built: make it the saved row.
        obj.pk, obj.prefix, obj.hashed_key, obj.created_at = saved.pk, saved.prefix, saved.hashed_key, saved.created_at
        obj._state.adding, obj._state.db = False, saved._state.db
        request._issued_key_plaintext = issued.plaintext  # type: ignore[attr-defined]

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None) -> HttpResponse:
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
        self.message_user(request, f"Revoked {count} key(s); every server stops accepting them within 2 seconds.")

"""Admin guardrails: django-ratelimit on admin login and key issuance; the audit log of every change
to routes, credentials, keys, grants and limits (who, when, what; never a secret), read-only in the
admin; limits managed in the admin at every scope."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.test import Client, override_settings

from routes import services
from routes.audit import acting_as
from routes.models import ApiKey, AuditEntry, ProviderCredential, Route
from usage.models import Limit

pytestmark = pytest.mark.django_db

SECRET = "sk-audit-7Hq2Lr9Vx4Wm1Kd8Np3Zt6"


@pytest.fixture
def admin_client(client: Client, django_user_model: Any) -> Client:
    user = django_user_model.objects.create(username="root", is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


@pytest.fixture
def rate_limited(settings: Any) -> None:
    """django-ratelimit on, counting in a cache of this test's own."""
    settings.RATELIMIT_ENABLE = True
    with override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                               "LOCATION": uuid.uuid4().hex}}):
        yield


@pytest.mark.usefixtures("rate_limited")
def test_admin_login_is_rate_limited(client: Client, settings: Any) -> None:
    settings.ADMIN_LOGIN_RATE = "3/h"  # an hour's window: five attempts never straddle its end
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast failed log-ins
    statuses = [client.post("/admin/login/", {"username": "x", "password": "wrong"}).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]  # 200: the form again, with its error
    assert client.get("/admin/login/").status_code == 200  # only attempts count


@pytest.mark.usefixtures("rate_limited")
def test_key_issuance_in_the_admin_is_rate_limited(admin_client: Client, settings: Any) -> None:
    settings.KEY_ISSUE_RATE = "2/h"
    team = services.team_get_or_create(name="t")
    consumer = services.consumer_get_or_create(team=team, name="c")
    issued = [admin_client.post("/admin/routes/apikey/add/", {"consumer": consumer.pk, "name": f"k{i}"}).status_code
              for i in range(3)]
    assert issued == [200, 200, 429]
    assert ApiKey.objects.count() == 2


def entries(object_type: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(object_type=object_type).order_by("id"))


def test_every_change_is_audited_with_who_and_what_and_never_a_secret() -> None:
    with acting_as("command:test"):
        route = services.route_create(name="aud", route_type="llm/v1/chat", provider="openai", model_name="gpt-4o",
                                      config={"openai_api_key": SECRET})
        services.route_set_enabled(routes=[route], enabled=False)
        services.credential_set(route=route, environment="production", secrets={"openai_api_key": SECRET + "x"})
        team = services.team_get_or_create(name="aud-team")
        grant = services.route_grant(route=route, team=team)
        consumer = services.consumer_get_or_create(team=team, name="aud-user")
        issued = services.api_key_issue(consumer=consumer)
        services.api_key_revoke(api_keys=[issued.api_key])
        limit = Limit.objects.create(scope=Limit.Scope.TEAM, team=team, period="month", usd="100")
        grant.delete()

    created, changed = entries("route")
    assert (created.action, created.actor, created.object_repr) == ("create", "command:test", "aud")
    assert created.changes["model_name"] == [None, "gpt-4o"]
    assert changed.action == "update" and changed.changes == {"enabled": [True, False]}
    cred_created, cred_changed = entries("credential")
    assert cred_created.changes["secrets"] == {"fields": {"added": ["openai_api_key"]}}
    assert cred_changed.changes == {"secrets": {"fields": {"changed": ["openai_api_key"]}}}
    key_created, key_revoked = entries("api key")
    assert "hashed_key" not in key_created.changes and key_created.changes["is_admin"] == [None, False]
    assert list(key_revoked.changes) == ["revoked_at"]
    assert [e.action for e in entries("grant")] == ["create", "delete"]
    assert entries("limit")[0].changes["usd"] == [None, "100"]
    assert entries("limit")[0].object_id == str(limit.pk)
    everything = json.dumps([e.changes for e in AuditEntry.objects.all()]) + "".join(
        e.object_repr for e in AuditEntry.objects.all())
    assert SECRET not in everything and "sk-" not in everything
    assert issued.plaintext not in everything and issued.api_key.hashed_key not in everything


def test_admin_edits_are_audited_as_the_admin_user(admin_client: Client) -> None:
    route = services.route_create(name="aud-admin", route_type="llm/v1/chat", provider="mock", model_name="m")
    response = admin_client.post(
        "/admin/usage/limit/add/",
        {"scope": "route", "period": "day", "route": route.pk, "calls": "500", "description": "day cap"},
    )
    assert response.status_code == 302, response.content[:2000]
    entry = entries("limit")[-1]
    assert entry.actor == "user:root" and entry.action == "create" and entry.changes["calls"] == [None, 500]


def test_limit_changes_over_the_api_are_audited_as_the_key(client: Client) -> None:
    route = services.route_create(name="aud-api", route_type="llm/v1/chat", provider="mock", model_name="m")
    team = services.team_get_or_create(name="ops")
    admin = services.api_key_issue(consumer=services.consumer_get_or_create(team=team, name="root"), is_admin=True)
    response = client.post("/api/2.0/gateway/limits/", {"route": route.name, "limits": [{"calls": 5}]},
                           content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {admin.plaintext}")
    assert response.status_code == 200, response.content
    entry = entries("limit")[-1]
    assert entry.actor == f"key:gw-{admin.api_key.prefix} (ops/root)"
    assert entry.changes["calls"] == [None, 5] and entry.changes["scope"] == [None, "route"]


def test_the_audit_log_is_visible_but_read_only_in_the_admin(admin_client: Client) -> None:
    with acting_as("command:test"):
        services.route_create(name="aud-ro", route_type="llm/v1/chat", provider="mock", model_name="m")
    entry = AuditEntry.objects.get(object_type="route")
    listing = admin_client.get("/admin/routes/auditentry/")
    assert listing.status_code == 200 and b"command:test" in listing.content
    page = admin_client.get(f"/admin/routes/auditentry/{entry.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert admin_client.post(f"/admin/routes/auditentry/{entry.pk}/change/", {"actor": "x"}).status_code == 403
    assert admin_client.get("/admin/routes/auditentry/add/").status_code == 403
    assert admin_client.post(f"/admin/routes/auditentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert AuditEntry.objects.get(pk=entry.pk).actor == "command:test"


def test_limits_at_every_scope_in_the_admin(admin_client: Client) -> None:
    route = services.route_create(name="adm-lim", route_type="llm/v1/chat", provider="mock", model_name="m")
    team = services.team_get_or_create(name="adm-team")
    consumer = services.consumer_get_or_create(team=team, name="adm-user")
    posts = [
        {"scope": "team", "period": "month", "team": team.pk, "usd": "250.00"},
        {"scope": "consumer", "period": "day", "consumer": consumer.pk, "tokens": "100000"},
        {"scope": "default_consumer", "period": "minute", "calls": "60"},
        {"scope": "consumer_on_route", "period": "minute", "route": route.pk, "consumer": consumer.pk, "calls": "5"},
    ]
    for data in posts:
        assert admin_client.post("/admin/usage/limit/add/", data).status_code == 302
    assert Limit.objects.count() == 4
    listing = admin_client.get("/admin/usage/limit/")
    assert listing.status_code == 200 and b"adm-team" in listing.content
    wrong = admin_client.post("/admin/usage/limit/add/", {"scope": "team", "period": "day", "route": route.pk,
                                                           "calls": "1"})
    assert wrong.status_code == 200 and b"Required for the scope" in wrong.content
    empty = admin_client.post("/admin/usage/limit/add/", {"scope": "route", "period": "day", "route": route.pk})
    assert b"Set at least one of calls, tokens or USD." in empty.content
    assert Limit.objects.count() == 4


def test_route_form_sets_production_only_and_the_default_cap(admin_client: Client) -> None:
    route = services.route_create(name="adm-prod", route_type="llm/v1/chat", provider="mock", model_name="m")
    route.production_only, route.default_max_tokens = True, 256
    route.save()
    page = admin_client.get(f"/admin/routes/route/{route.pk}/change/")
    assert page.status_code == 200 and b"production_only" in page.content and b"default_max_tokens" in page.content
    assert Route.objects.get(pk=route.pk).production_only
    assert not ProviderCredential.objects.filter(route=route).exists()

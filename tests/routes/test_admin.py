"""The route admin, driven like a browser: real add/change forms (inline management forms included),
the changelist, and the route actions. Credentials are write-only: no page ever shows a stored secret."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any, ClassVar

import pytest
from django.contrib.messages import constants as message_levels
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from providers import registry
from providers.base import Provider, RouteType
from routes.models import ProviderCredential, Route, RouteGrant, Team

pytestmark = pytest.mark.django_db

ROUTE_ADD = "/admin/routes/route/add/"
ROUTE_CHANGELIST = "/admin/routes/route/"
CLOSED_PORT_BASE = "http://127.0.0.1:9/v1"  # the discard port: nothing listens there


@pytest.fixture
def admin_client(client: Client, django_user_model: Any) -> Client:
    """A client logged in as a superuser (no password: hashing one costs most of a test's time)."""
    user = django_user_model.objects.create(username="root", is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


def route_change_url(route: Route) -> str:
    return f"/admin/routes/route/{route.pk}/change/"


def new_secret() -> str:
    return f"sk-{secrets.token_urlsafe(24)}"


# ---------------------------------------------------------------- a tiny browser: read a form, post it back


class _FormReader(HTMLParser):
    """Collects what a browser would submit from the form with `form_id` (no JavaScript)."""

    def __init__(self, form_id: str) -> None:
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.in_form = False
        self.fields: list[tuple[str, str]] = []
        self._select: str | None = None
        self._select_options: list[tuple[str, bool]] = []
        self._textarea: str | None = None
        self._textarea_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("id") == self.form_id:
            self.in_form = True
        if not self.in_form:
            return
        name = a.get("name", "")
        if tag == "input" and name:
            kind = a.get("type", "text").lower()
            if kind in ("submit", "button", "image", "file", "reset"):
                return
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            default = "on" if kind in ("checkbox", "radio") else ""
            self.fields.append((name, a.get("value", default)))
        elif tag == "select" and name:
            self._select, self._select_options = name, []
        elif tag == "option" and self._select is not None:
            self._select_options.append((a.get("value", ""), "selected" in a))
        elif tag == "textarea" and name:
            self._textarea, self._textarea_text = name, []

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._textarea_text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self.in_form:
            self.in_form = False
        elif tag == "select" and self._select is not None:
            chosen = [v for v, selected in self._select_options if selected] or [
                v for v, _ in self._select_options[:1]
            ]
            self.fields.extend((self._select, v) for v in chosen)
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            self.fields.append((self._textarea, "".join(self._textarea_text).removeprefix("\n")))
            self._textarea = None


def read_form(html: str, form_id: str) -> dict[str, Any]:
    """The form's submittable fields (the inline `__prefix__` templates left out, as a browser would)."""
    reader = _FormReader(form_id)
    reader.feed(html)
    data: dict[str, Any] = {}
    for name, value in reader.fields:
        data.setdefault(name, value)
    return data


def add_inline_form(page_html: str, data: dict[str, Any], prefix: str, **values: str) -> None:
    """What the admin's "Add another" link does: copy the empty form's fields and bump TOTAL_FORMS."""
    index = int(data[f"{prefix}-TOTAL_FORMS"])
    template = {k: v for k, v in read_form(page_html, "route_form").items() if k.startswith(f"{prefix}-__prefix__-")}
    assert template, f"no empty form for inline {prefix!r}"
    for name, value in template.items():
        data[name.replace("__prefix__", str(index))] = value
    for field, value in values.items():
        data[f"{prefix}-{index}-{field}"] = value
    data[f"{prefix}-TOTAL_FORMS"] = str(index + 1)


def submittable(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if "__prefix__" not in k}


def open_form(client: Client, url: str) -> tuple[str, dict[str, Any]]:
    response = client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    return html, read_form(html, "route_form")


def post_add_route(
    client: Client, *, name: str, provider: str, route_type: str = "llm/v1/chat", model_name: str = "gpt-4o-mini",
    config: dict[str, Any] | None = None, credential: dict[str, str] | None = None,
) -> Any:
    html, data = open_form(client, ROUTE_ADD)
    data.update(name=name, provider=provider, route_type=route_type, model_name=model_name,
                config=json.dumps(config or {}))
    if credential is not None:
        add_inline_form(html, data, "credentials", **credential)
    return client.post(ROUTE_ADD, submittable(data))


def post_change_route(client: Client, route: Route, **changes: str) -> Any:
    """Submit the route's change form as shown, with `changes` (inline fields by their full name)."""
    _, data = open_form(client, route_change_url(route))
    data.update(changes)
    return client.post(route_change_url(route), submittable(data))


def errors_in(html: str) -> str:
    return " ".join(re.findall(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', html, flags=re.S))


def assert_secret_absent(html: str, secret: str) -> None:
    for start in range(len(secret) - 5):
        piece = secret[start : start + 6]
        assert piece not in html, f"a piece of the secret ({piece!r}) is in the page"


def stored_secrets(route: Route) -> dict[str, str]:
    return dict(ProviderCredential.objects.get(route=route).secrets)


# ---------------------------------------------------------------- adding routes with credentials


def test_openai_route_added_with_inline_credential_stores_the_key_encrypted_and_never_shows_it(
    admin_client: Client,
) -> None:
    secret = new_secret()
    response = post_add_route(
        admin_client, name="gpt", provider="openai", config={"openai_api_base": CLOSED_PORT_BASE},
        credential={"environment": "production", "api_key": secret},
    )
    assert response.status_code == 302, errors_in(response.content.decode())
    route = Route.objects.get(name="gpt")
    assert (route.provider, route.config) == ("openai", {"openai_api_base": CLOSED_PORT_BASE})
    assert stored_secrets(route) == {"openai_api_key": secret}

    for url in (route_change_url(route), ROUTE_CHANGELIST, f"/admin/routes/route/{route.pk}/history/",
                f"/admin/routes/route/{route.pk}/delete/"):
        page = admin_client.get(url)
        assert page.status_code == 200, url
        assert_secret_absent(page.content.decode(), secret)
    change_page = admin_client.get(route_change_url(route)).content.decode()
    assert "openai_api_key: ••••••••" in change_page


def test_mock_route_is_added_without_credentials(admin_client: Client) -> None:
    response = post_add_route(admin_client, name="mocky", provider="mock", route_type="llm/v1/embeddings",
                              config={"dimensions": 8})
    assert response.status_code == 302, errors_in(response.content.decode())
    route = Route.objects.get(name="mocky")
    assert route.config == {"dimensions": 8}
    assert not ProviderCredential.objects.filter(route=route).exists()
    assert admin_client.get(route_change_url(route)).status_code == 200


def test_secret_for_a_provider_that_takes_none_is_a_form_error(admin_client: Client) -> None:
    secret = new_secret()
    response = post_add_route(admin_client, name="mocky", provider="mock",
                              credential={"environment": "production", "api_key": secret})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Provider mock takes no secret fields." in errors_in(html)
    assert_secret_absent(html, secret)
    assert not Route.objects.exists()


def test_openai_route_for_openai_itself_without_a_key_is_refused(admin_client: Client) -> None:
    response = post_add_route(admin_client, name="gpt", provider="openai", config={})
    assert response.status_code == 200
    assert "openai_api_key" in errors_in(response.content.decode())
    assert not Route.objects.exists()


def test_openai_route_for_openai_itself_with_a_key_is_accepted(admin_client: Client) -> None:
    response = post_add_route(admin_client, name="gpt", provider="openai", config={},
                              credential={"environment": "production", "api_key": new_secret()})
    assert response.status_code == 302, errors_in(response.content.decode())


def test_secret_in_the_route_config_is_refused_and_not_echoed_back(admin_client: Client) -> None:
    secret = new_secret()
    response = post_add_route(
        admin_client, name="gpt", provider="openai",
        config={"openai_api_base": CLOSED_PORT_BASE, "openai_api_key": secret},
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "openai_api_key belong" in errors_in(html)
    assert "Replace API key" in errors_in(html)
    assert_secret_absent(html, secret)
    assert CLOSED_PORT_BASE in html  # the rest of the config is kept for the next try
    assert not Route.objects.exists()


def test_unknown_config_field_is_a_form_error(admin_client: Client) -> None:
    response = post_add_route(admin_client, name="gpt", provider="openai", config={"temperature": 1})
    assert response.status_code == 200
    assert "Unknown config field(s) for provider &#x27;openai&#x27;: temperature" in errors_in(
        response.content.decode()
    )


class _ChatOnlyProvider(Provider):
    name: ClassVar[str] = "chat-only"
    route_types: ClassVar[frozenset[RouteType]] = frozenset({RouteType.CHAT})
    needs_network: ClassVar[bool] = False


def test_route_type_the_provider_lacks_is_refused(admin_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry._PROVIDERS, "chat-only", _ChatOnlyProvider())
    response = post_add_route(admin_client, name="emb", provider="chat-only", route_type="llm/v1/embeddings")
    assert response.status_code == 200
    assert "does not support route type" in errors_in(response.content.decode())
    assert not Route.objects.exists()
    ok = post_add_route(admin_client, name="chat", provider="chat-only", route_type="llm/v1/chat")
    assert ok.status_code == 302, errors_in(ok.content.decode())


def test_unknown_provider_is_refused(admin_client: Client) -> None:
    response = post_add_route(admin_client, name="x", provider="no-such-vendor")
    assert response.status_code == 200
    assert "Select a valid choice" in errors_in(response.content.decode())


# ---------------------------------------------------------------- changing credentials


@pytest.fixture
def openai_route(make_route: Callable[..., Route]) -> tuple[Route, str]:
    secret = new_secret()
    route = make_route(name="gpt", provider="openai", model_name="gpt-4o-mini",
                       config={"openai_api_base": CLOSED_PORT_BASE, "openai_api_key": secret})
    return route, secret


def test_replacing_the_api_key_stores_the_new_one(admin_client: Client, openai_route: tuple[Route, str]) -> None:
    route, old = openai_route
    new = new_secret()
    response = post_change_route(admin_client, route, **{"credentials-0-api_key": new})
    assert response.status_code == 302, errors_in(response.content.decode())
    assert stored_secrets(route) == {"openai_api_key": new}
    html = admin_client.get(route_change_url(route)).content.decode()
    assert_secret_absent(html, new)
    assert_secret_absent(html, old)


def test_leaving_the_api_key_blank_keeps_the_stored_one(admin_client: Client, openai_route: tuple[Route, str]) -> None:
    route, secret = openai_route
    response = post_change_route(admin_client, route, description="now with a description")
    assert response.status_code == 302, errors_in(response.content.decode())
    route.refresh_from_db()
    assert route.description == "now with a description"
    assert stored_secrets(route) == {"openai_api_key": secret}


def test_change_form_never_prefills_a_secret(admin_client: Client, openai_route: tuple[Route, str]) -> None:
    route, _ = openai_route
    _, data = open_form(admin_client, route_change_url(route))
    assert data["credentials-0-api_key"] == ""
    assert data["credentials-0-other_secrets"] == ""


def test_unknown_other_secret_field_is_a_form_error(admin_client: Client, openai_route: tuple[Route, str]) -> None:
    route, secret = openai_route
    response = post_change_route(
        admin_client, route, **{"credentials-0-other_secrets": json.dumps({"aws_secret_access_key": "x" * 20})}
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "Unknown secret field(s) for openai: aws_secret_access_key" in errors_in(html)
    assert "x" * 20 not in html
    assert stored_secrets(route) == {"openai_api_key": secret}


@pytest.mark.parametrize("raw", ["{not json", '["a list"]', '{"openai_api_key": 1}'])
def test_malformed_other_secrets_are_a_form_error(
    admin_client: Client, openai_route: tuple[Route, str], raw: str
) -> None:
    route, secret = openai_route
    response = post_change_route(admin_client, route, **{"credentials-0-other_secrets": raw})
    assert response.status_code == 200
    assert errors_in(response.content.decode())
    assert stored_secrets(route) == {"openai_api_key": secret}


def test_other_secrets_replace_a_known_field(admin_client: Client, openai_route: tuple[Route, str]) -> None:
    route, _ = openai_route
    new = new_secret()
    response = post_change_route(
        admin_client, route, **{"credentials-0-other_secrets": json.dumps({"openai_api_key": new})}
    )
    assert response.status_code == 302, errors_in(response.content.decode())
    assert stored_secrets(route) == {"openai_api_key": new}


def test_an_empty_other_secret_value_removes_that_field(
    admin_client: Client, openai_route: tuple[Route, str]
) -> None:
    route, _ = openai_route
    new = new_secret()
    response = post_change_route(admin_client, route, **{
        "credentials-0-api_key": new, "credentials-0-other_secrets": json.dumps({"openai_api_key": ""}),
    })
    # The api_key field wins over the removal: the credential keeps a (new) key.
    assert response.status_code == 302, errors_in(response.content.decode())
    assert stored_secrets(route) == {"openai_api_key": new}


def test_emptying_a_credential_asks_to_delete_it_instead(
    admin_client: Client, openai_route: tuple[Route, str]
) -> None:
    route, secret = openai_route
    response = post_change_route(
        admin_client, route, **{"credentials-0-other_secrets": json.dumps({"openai_api_key": ""})}
    )
    assert response.status_code == 200
    assert "tick Delete" in errors_in(response.content.decode())
    assert stored_secrets(route) == {"openai_api_key": secret}


def test_new_credential_without_any_secret_is_a_form_error(
    admin_client: Client, make_route: Callable[..., Route]
) -> None:
    route = make_route(name="local", provider="openai", config={"openai_api_base": CLOSED_PORT_BASE})
    html, data = open_form(admin_client, route_change_url(route))
    add_inline_form(html, data, "credentials", environment="development")
    response = admin_client.post(route_change_url(route), submittable(data))
    assert response.status_code == 200
    assert "Enter the API key" in errors_in(response.content.decode())


def test_switching_provider_with_a_credential_of_the_old_one_is_refused_until_it_is_deleted(
    admin_client: Client, openai_route: tuple[Route, str]
) -> None:
    route, secret = openai_route
    response = post_change_route(admin_client, route, provider="mock", config="{}")
    assert response.status_code == 200
    html = response.content.decode()
    assert "holds openai_api_key, which provider mock does not take" in errors_in(html)
    assert_secret_absent(html, secret)
    response = post_change_route(admin_client, route, provider="mock", config="{}",
                                 **{"credentials-0-DELETE": "on"})
    assert response.status_code == 302, errors_in(response.content.decode())
    route.refresh_from_db()
    assert route.provider == "mock"
    assert not ProviderCredential.objects.filter(route=route).exists()


def test_emptied_config_is_stored_as_an_empty_object(
    admin_client: Client, make_route: Callable[..., Route]
) -> None:
    route = make_route(name="m", config={"reply": "hi"})
    response = post_change_route(admin_client, route, config="")
    assert response.status_code == 302, errors_in(response.content.decode())
    route.refresh_from_db()
    assert route.config == {}


def test_route_form_posts_are_kept_out_of_error_reports(
    admin_client: Client, openai_route: tuple[Route, str]
) -> None:
    route, _ = openai_route
    response = post_change_route(admin_client, route, **{"credentials-0-api_key": new_secret()})
    assert response.wsgi_request.sensitive_post_parameters == "__ALL__"  # type: ignore[attr-defined]


def test_second_environment_credential_is_added_on_the_change_page(
    admin_client: Client, openai_route: tuple[Route, str]
) -> None:
    route, prod = openai_route
    dev = new_secret()
    html, data = open_form(admin_client, route_change_url(route))
    add_inline_form(html, data, "credentials", environment="development", api_key=dev)
    response = admin_client.post(route_change_url(route), submittable(data))
    assert response.status_code == 302, errors_in(response.content.decode())
    by_env = {c.environment: c.secrets for c in ProviderCredential.objects.filter(route=route)}
    assert by_env == {"production": {"openai_api_key": prod}, "development": {"openai_api_key": dev}}
    page = admin_client.get(route_change_url(route)).content.decode()
    assert_secret_absent(page, prod)
    assert_secret_absent(page, dev)


def test_duplicate_environment_is_a_form_error(admin_client: Client, openai_route: tuple[Route, str]) -> None:
    route, _ = openai_route
    html, data = open_form(admin_client, route_change_url(route))
    add_inline_form(html, data, "credentials", environment="production", api_key=new_secret())
    response = admin_client.post(route_change_url(route), submittable(data))
    assert response.status_code == 200
    assert ProviderCredential.objects.filter(route=route).count() == 1


def test_removing_the_only_key_of_an_openai_api_route_is_refused(
    admin_client: Client, make_route: Callable[..., Route]
) -> None:
    route = make_route(name="gpt", provider="openai", config={"openai_api_key": new_secret()})
    response = post_change_route(admin_client, route, **{"credentials-0-DELETE": "on"})
    assert response.status_code == 200
    assert "openai_api_key" in errors_in(response.content.decode())
    assert ProviderCredential.objects.filter(route=route).exists()


def test_grant_to_a_team_is_added_inline(admin_client: Client, make_route: Callable[..., Route]) -> None:
    route = make_route(name="chat")
    team = Team.objects.create(name="blue")
    html, data = open_form(admin_client, route_change_url(route))
    add_inline_form(html, data, "grants", team=str(team.pk))
    response = admin_client.post(route_change_url(route), submittable(data))
    assert response.status_code == 302, errors_in(response.content.decode())
    assert RouteGrant.objects.filter(route=route, team=team).exists()


# ---------------------------------------------------------------- pages


def test_change_page_shows_how_to_call_the_route(admin_client: Client, make_route: Callable[..., Route]) -> None:
    route = make_route(name="chat")
    html = admin_client.get(route_change_url(route)).content.decode()
    assert "http://testserver/gateway/chat/invocations" in html
    assert "http://testserver/v1/chat/completions" in html
    assert "curl" in html and "Authorization: Bearer" in html


def test_invocation_url_uses_the_configured_public_url(
    admin_client: Client, make_route: Callable[..., Route], settings: Any
) -> None:
    settings.GATEWAY = {**settings.GATEWAY, "PUBLIC_URL": "https://llm.example.com/"}
    route = make_route(name="emb", route_type="llm/v1/embeddings")
    html = admin_client.get(route_change_url(route)).content.decode()
    assert "https://llm.example.com/gateway/emb/invocations" in html
    assert "https://llm.example.com/v1/embeddings" in html


def test_changelist_query_count_does_not_grow_with_routes(
    admin_client: Client, make_route: Callable[..., Route]
) -> None:
    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client.get(ROUTE_CHANGELIST).status_code == 200
        return len(ctx.captured_queries)

    make_route(name="a-0", provider="openai", config={"openai_api_key": new_secret()})
    before = count()
    for i in range(1, 6):
        make_route(name=f"a-{i}", provider="openai", config={"openai_api_key": new_secret()})
    assert count() == before


def test_changelist_filters_and_search(admin_client: Client, make_route: Callable[..., Route]) -> None:
    make_route(name="chat-one")
    make_route(name="emb-one", route_type="llm/v1/embeddings", enabled=False)
    for query in ("?provider=mock", "?route_type__exact=llm%2Fv1%2Fembeddings", "?enabled__exact=0", "?q=emb"):
        response = admin_client.get(ROUTE_CHANGELIST + query)
        assert response.status_code == 200, query
        html = response.content.decode()
        assert "emb-one" in html, query
    assert "chat-one" not in admin_client.get(ROUTE_CHANGELIST + "?q=emb").content.decode()


# ---------------------------------------------------------------- actions


def run_action(client: Client, action: str, *routes: Route) -> Any:
    response = client.post(
        ROUTE_CHANGELIST, {"action": action, "_selected_action": [r.pk for r in routes], "index": 0}, follow=True
    )
    assert response.status_code == 200
    return response


def messages_of(response: Any) -> list[tuple[int, str]]:
    return [(m.level, m.message) for m in response.context["messages"]]


def test_disable_and_enable_actions(admin_client: Client, make_route: Callable[..., Route]) -> None:
    a, b = make_route(name="a"), make_route(name="b", enabled=False)
    response = run_action(admin_client, "disable_routes", a, b)
    assert messages_of(response) == [(message_levels.SUCCESS, "Disabled 1 route(s).")]
    assert not Route.objects.filter(enabled=True).exists()
    response = run_action(admin_client, "enable_routes", a, b)
    assert messages_of(response) == [(message_levels.SUCCESS, "Enabled 2 route(s).")]
    assert Route.objects.filter(enabled=True).count() == 2


def test_test_action_on_a_mock_route_reports_its_answer(admin_client: Client, make_route: Callable[..., Route]) -> None:
    route = make_route(name="mock-chat", config={"reply": "pong from the mock"})
    [(level, text)] = messages_of(run_action(admin_client, "test_routes", route))
    assert level == message_levels.SUCCESS
    assert text.startswith("mock-chat answered 'pong from the mock'")


@pytest.mark.parametrize("route_type", ["llm/v1/completions", "llm/v1/embeddings"])
def test_test_action_covers_every_route_type(
    admin_client: Client, make_route: Callable[..., Route], route_type: str
) -> None:
    route = make_route(name="m", route_type=route_type)
    [(level, text)] = messages_of(run_action(admin_client, "test_routes", route))
    assert level == message_levels.SUCCESS, text
    assert text.startswith("m answered")


def test_test_action_on_an_unreachable_upstream_reports_the_mapped_error_without_the_key(
    admin_client: Client, openai_route: tuple[Route, str]
) -> None:
    route, secret = openai_route
    response = run_action(admin_client, "test_routes", route)
    [(level, text)] = messages_of(response)
    assert level == message_levels.ERROR
    assert text.startswith("gpt: 502 UPSTREAM_UNAVAILABLE")
    assert_secret_absent(text, secret)
    assert_secret_absent(response.content.decode(), secret)


def test_test_action_reports_each_route(
    admin_client: Client, make_route: Callable[..., Route], openai_route: tuple[Route, str]
) -> None:
    route, _ = openai_route
    mock = make_route(name="mock-chat")
    levels = sorted(level for level, _ in messages_of(run_action(admin_client, "test_routes", route, mock)))
    assert levels == [message_levels.SUCCESS, message_levels.ERROR]


def test_changelist_decrypts_no_secret(
    admin_client: Client, openai_route: tuple[Route, str], settings: Any
) -> None:
    settings.FIELD_ENCRYPTION_KEYS = ["kyrR0UX3p2vD2aY8mQ4H8C1S9XkTT3Lr1oqRPm0sQ2w="]  # not the key used
    response = admin_client.get(ROUTE_CHANGELIST)
    assert response.status_code == 200
    assert "production" in response.content.decode()

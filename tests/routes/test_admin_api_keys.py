"""The API key admin: a key is shown once when issued, stored only as its SHA-256 hash, revocable."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from django.contrib.messages import constants as message_levels
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from routes import services
from routes.models import ApiKey, Consumer

pytestmark = pytest.mark.django_db

KEY_ADD = "/admin/routes/apikey/add/"
KEY_CHANGELIST = "/admin/routes/apikey/"
KEY_PATTERN = re.compile(r"gw-[0-9a-f]{8}_[A-Za-z0-9_-]{43}")


@pytest.fixture
def admin_client(client: Client, django_user_model: Any) -> Client:
    """A client logged in as a superuser (no password: hashing one costs most of a test's time)."""
    user = django_user_model.objects.create(username="root", is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


@pytest.fixture
def consumer() -> Consumer:
    team = services.team_get_or_create(name="blue")
    return services.consumer_get_or_create(team=team, name="svc", kind=Consumer.Kind.SERVICE)


def issue_through_admin(client: Client, consumer: Consumer, **fields: Any) -> Any:
    data = {"consumer": consumer.pk, "name": "ci", "expires_at_0": "", "expires_at_1": "", **fields}
    return client.post(KEY_ADD, data)


def test_issued_key_is_shown_once_uncached_and_only_its_hash_is_stored(
    admin_client: Client, consumer: Consumer
) -> None:
    response = issue_through_admin(admin_client, consumer, is_admin="on")
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    html = response.content.decode()
    [plaintext] = KEY_PATTERN.findall(html)

    api_key = ApiKey.objects.get()
    assert (api_key.consumer, api_key.name, api_key.is_admin) == (consumer, "ci", True)
    assert api_key.hashed_key == hashlib.sha256(plaintext.encode()).hexdigest()
    assert plaintext.startswith(f"gw-{api_key.prefix}_")
    stored = ApiKey.objects.filter(pk=api_key.pk).values().get()
    assert not any(plaintext in str(value) for value in stored.values())
    assert f"/admin/routes/apikey/{api_key.pk}/change/" in html  # the "Done" link


def test_key_pages_never_show_the_key_or_its_hash(admin_client: Client, consumer: Consumer) -> None:
    [plaintext] = KEY_PATTERN.findall(issue_through_admin(admin_client, consumer).content.decode())
    api_key = ApiKey.objects.get()
    secret_part = plaintext.split("_", 1)[1]
    for url in (
        f"/admin/routes/apikey/{api_key.pk}/change/",
        KEY_CHANGELIST,
        f"/admin/routes/apikey/{api_key.pk}/history/",
        f"/admin/routes/consumer/{consumer.pk}/change/",
    ):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert secret_part[:8] not in html, url
        assert api_key.hashed_key[:12] not in html, url
    assert f"gw-{api_key.prefix}_" in admin_client.get(KEY_CHANGELIST).content.decode()


def test_add_form_without_consumer_is_a_form_error(admin_client: Client) -> None:
    response = admin_client.post(KEY_ADD, {"name": "x", "expires_at_0": "", "expires_at_1": ""})
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert not ApiKey.objects.exists()


def test_key_expiring_in_the_past_is_not_issued(admin_client: Client, consumer: Consumer) -> None:
    response = issue_through_admin(admin_client, consumer, expires_at_0="2020-01-01", expires_at_1="00:00:00")
    assert response.status_code == 200
    assert "This time has passed" in response.content.decode()
    assert not ApiKey.objects.exists()


def test_key_with_a_future_expiry_is_issued(admin_client: Client, consumer: Consumer) -> None:
    response = issue_through_admin(admin_client, consumer, expires_at_0="2999-01-01", expires_at_1="00:00:00")
    assert response.status_code == 200
    [plaintext] = KEY_PATTERN.findall(response.content.decode())
    key = ApiKey.objects.get()
    assert key.expires_at is not None and key.expires_at.year == 2999
    assert key.hashed_key == hashlib.sha256(plaintext.encode()).hexdigest()


def test_change_page_edits_name_but_not_the_key(admin_client: Client, consumer: Consumer) -> None:
    issued = services.api_key_issue(consumer=consumer, name="old")
    url = f"/admin/routes/apikey/{issued.api_key.pk}/change/"
    response = admin_client.post(url, {"name": "new", "expires_at_0": "", "expires_at_1": ""})
    assert response.status_code == 302
    key = ApiKey.objects.get()
    assert key.name == "new"
    assert (key.prefix, key.hashed_key) == (issued.api_key.prefix, issued.api_key.hashed_key)


def test_revoke_action_sets_revoked_at(admin_client: Client, consumer: Consumer) -> None:
    keep = services.api_key_issue(consumer=consumer).api_key
    revoke = services.api_key_issue(consumer=consumer).api_key
    response = admin_client.post(
        KEY_CHANGELIST, {"action": "revoke_keys", "_selected_action": [revoke.pk], "index": 0}, follow=True
    )
    assert response.status_code == 200
    [message] = list(response.context["messages"])
    assert message.level == message_levels.SUCCESS
    assert message.message.startswith("Revoked 1 key(s)")
    revoke.refresh_from_db()
    keep.refresh_from_db()
    assert revoke.revoked_at is not None and not revoke.is_usable()
    assert keep.revoked_at is None
    first = revoke.revoked_at
    admin_client.post(KEY_CHANGELIST, {"action": "revoke_keys", "_selected_action": [revoke.pk], "index": 0})
    revoke.refresh_from_db()
    assert revoke.revoked_at == first  # revoking again keeps the original time


def test_list_filters_and_search(admin_client: Client, consumer: Consumer) -> None:
    person = services.consumer_get_or_create(team=services.team_get_or_create(name="red"), name="bob")
    admin_key = services.api_key_issue(consumer=consumer, name="svc admin", is_admin=True).api_key
    revoked = services.api_key_issue(consumer=person, name="bob old").api_key
    services.api_key_revoke(api_keys=[revoked])
    active = services.api_key_issue(consumer=person, name="bob laptop").api_key

    def listed(query: str) -> set[int]:
        response = admin_client.get(KEY_CHANGELIST + query)
        assert response.status_code == 200, query
        return {int(pk) for pk in re.findall(r'name="_selected_action" value="(\d+)"', response.content.decode())}

    assert listed("") == {admin_key.pk, revoked.pk, active.pk}
    assert listed("?is_admin__exact=1") == {admin_key.pk}
    assert listed("?revoked_at__isempty=0") == {revoked.pk}
    assert listed("?revoked_at__isempty=1") == {admin_key.pk, active.pk}
    assert listed(f"?consumer__team__id__exact={person.team_id}") == {revoked.pk, active.pk}
    assert listed("?consumer__kind__exact=service") == {admin_key.pk}
    assert listed("?q=laptop") == {active.pk}
    assert listed(f"?q={admin_key.prefix}") == {admin_key.pk}
    assert listed("?q=red") == {revoked.pk, active.pk}


def test_consumer_and_team_pages_load(admin_client: Client, consumer: Consumer) -> None:
    services.api_key_issue(consumer=consumer)
    for url in ("/admin/routes/consumer/", f"/admin/routes/consumer/{consumer.pk}/change/",
                "/admin/routes/team/", "/admin/routes/consumer/?kind__exact=service&q=svc",
                "/admin/autocomplete/?app_label=routes&model_name=apikey&field_name=consumer&term=sv"):
        assert admin_client.get(url).status_code == 200, url


@pytest.mark.parametrize("url", [KEY_CHANGELIST, "/admin/routes/consumer/"])
def test_changelist_query_count_does_not_grow_with_rows(admin_client: Client, url: str) -> None:
    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert admin_client.get(url).status_code == 200
        return len(ctx.captured_queries)

    def add(i: int) -> None:
        team = services.team_get_or_create(name=f"team-{i}")
        services.api_key_issue(consumer=services.consumer_get_or_create(team=team, name=f"c-{i}"))

    add(0)
    before = count()
    for i in range(1, 6):
        add(i)
    assert count() == before


def test_add_page_loads(admin_client: Client) -> None:
    response = admin_client.get(KEY_ADD)
    assert response.status_code == 200
    assert 'name="consumer"' in response.content.decode()

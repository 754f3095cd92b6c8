"""The MLflow 2.5 route API (contract 1) through Django: create / get / list / delete, auth and errors."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from routes.models import ProviderCredential, Route

pytestmark = pytest.mark.django_db

ROUTES = "/api/2.0/gateway/routes/"
SECRET = "sk-test-SECRET-value-0123456789abcdef"


def call(client: Client, method: str, path: str, key: str | None, body: Any = None) -> Any:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    if body is None:
        return getattr(client, method)(path, **headers)
    return getattr(client, method)(path, data=body, content_type="application/json", **headers)


def test_admin_creates_route_from_the_seed_body_and_secret_never_comes_back(client: Client, make_caller) -> None:
    admin = make_caller(is_admin=True)
    body = {
        "name": "product-review-gpt4",
        "route_type": "llm/v1/completions",
        "data": {"name": "gpt-4", "provider": "openai", "openai_config": {"openai_api_key": SECRET}},
    }
    response = call(client, "post", ROUTES, admin.key, body)
    assert response.status_code == 200, response.content
    assert response.json() == {
        "name": "product-review-gpt4",
        "route_type": "llm/v1/completions",
        "model": {"name": "gpt-4", "provider": "openai"},
        "route_url": "http://testserver/gateway/product-review-gpt4/invocations",
        "limit": None,
    }
    route = Route.objects.get(name="product-review-gpt4")
    assert route.config == {}  # the key went to the encrypted credential, not the plain config
    assert ProviderCredential.objects.get(route=route).secrets == {"openai_api_key": SECRET}
    for path in (ROUTES, ROUTES + "product-review-gpt4"):
        assert SECRET[:8] not in call(client, "get", path, admin.key).content.decode()


def test_admin_creates_route_from_mlflow_model_body(client: Client, make_caller) -> None:
    admin = make_caller(is_admin=True)
    body = {"name": "emb", "route_type": "llm/v1/embeddings",
            "model": {"name": "text-embedding-3-small", "provider": "openai",
                      "config": {"openai_api_key": SECRET, "openai_api_base": "http://127.0.0.1:1/v1"}}}
    response = call(client, "post", ROUTES, admin.key, body)
    assert response.status_code == 200, response.content
    assert Route.objects.get(name="emb").config == {"openai_api_base": "http://127.0.0.1:1/v1"}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"name": "x", "route_type": "llm/v1/nope", "model": {"name": "m", "provider": "mock"}}, 400,
         "INVALID_PARAMETER_VALUE"),
        ({"name": "x", "route_type": "llm/v1/chat", "model": {"name": "m", "provider": "nope"}}, 400,
         "INVALID_PARAMETER_VALUE"),
        ({"name": "bad name!", "route_type": "llm/v1/chat", "model": {"name": "m", "provider": "mock"}}, 400,
         "INVALID_PARAMETER_VALUE"),
        ({"name": "x", "route_type": "llm/v1/chat"}, 400, "INVALID_PARAMETER_VALUE"),
        ({"name": "x", "route_type": "llm/v1/chat", "model": {"name": "m", "provider": "openai",
                                                             "config": {"bogus_field": 1}}}, 400,
         "INVALID_PARAMETER_VALUE"),
        ({"name": 5, "route_type": []}, 400, "INVALID_PARAMETER_VALUE"),
    ],
)
def test_bad_route_bodies_are_400_in_mlflow_shape(client: Client, make_caller, body: Any, status: int,
                                                  code: str) -> None:
    admin = make_caller(is_admin=True)
    response = call(client, "post", ROUTES, admin.key, body)
    assert response.status_code == status
    assert response.json()["error_code"] == code
    assert response.json()["message"]
    assert not Route.objects.exists()


def test_malformed_json_is_400(client: Client, make_caller) -> None:
    admin = make_caller(is_admin=True)
    response = client.post(ROUTES, data="{not json", content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {admin.key}")
    assert response.status_code == 400
    assert response.json()["error_code"] == "MALFORMED_REQUEST"


def test_duplicate_route_is_409(client: Client, make_caller, make_route) -> None:
    admin = make_caller(is_admin=True)
    make_route(name="dup")
    response = call(client, "post", ROUTES, admin.key,
                    {"name": "dup", "route_type": "llm/v1/chat", "model": {"name": "m", "provider": "mock"}})
    assert response.status_code == 409
    assert response.json()["error_code"] == "RESOURCE_ALREADY_EXISTS"


def test_consumer_key_cannot_create_or_delete_routes(client: Client, make_caller, make_route) -> None:
    route = make_route(name="r1")
    consumer = make_caller(routes=(route,))
    body = {"name": "x", "route_type": "llm/v1/chat", "model": {"name": "m", "provider": "mock"}}
    created = call(client, "post", ROUTES, consumer.key, body)
    assert created.status_code == 403
    assert created.json()["error_code"] == "PERMISSION_DENIED"
    deleted = call(client, "delete", ROUTES + "r1", consumer.key)
    assert deleted.status_code == 403
    assert Route.objects.filter(name="r1").exists() and not Route.objects.filter(name="x").exists()


def test_missing_invalid_and_revoked_keys_are_401(client: Client, make_caller) -> None:
    from routes.services import api_key_revoke

    caller = make_caller()
    assert call(client, "get", ROUTES, None).status_code == 401
    assert call(client, "get", ROUTES, "gw-nope_nope").status_code == 401
    api_key_revoke(api_keys=[caller.api_key])
    response = call(client, "get", ROUTES, caller.key)
    assert response.status_code == 401
    assert response.json()["error_code"] == "UNAUTHENTICATED"


def test_expired_key_is_401(client: Client, make_caller) -> None:
    from datetime import timedelta

    from django.utils import timezone

    caller = make_caller(expires_at=timezone.now() - timedelta(seconds=1))
    assert call(client, "get", ROUTES, caller.key).status_code == 401


def test_listing_is_paginated_and_shows_only_granted_routes(client: Client, make_caller, make_route,
                                                            settings) -> None:
    settings.GATEWAY = {**settings.GATEWAY, "PAGE_SIZE": 2}
    routes = [make_route(name=f"r{i}") for i in range(5)]
    make_route(name="secret-route")
    team_caller = make_caller(team="t", consumer="c1")
    from routes.services import route_grant

    for r in routes[:3]:
        route_grant(route=r, team=team_caller.consumer.team)
    route_grant(route=routes[4], consumer=team_caller.consumer)

    names, token, pages = [], None, 0
    while True:
        path = ROUTES + (f"?page_token={token}" if token else "")
        page = call(client, "get", path, team_caller.key).json()
        names += [r["name"] for r in page["routes"]]
        pages += 1
        token = page["next_page_token"]
        if not token:
            break
    assert names == ["r0", "r1", "r2", "r4"]
    assert pages == 2
    admin = make_caller(consumer="root", is_admin=True)
    page = call(client, "get", ROUTES + "?max_results=100", admin.key).json()
    assert len(page["routes"]) == 6


def test_bad_page_token_is_400(client: Client, make_caller) -> None:
    caller = make_caller()
    response = call(client, "get", ROUTES + "?page_token=%%%", caller.key)
    assert response.status_code == 400


def test_get_unknown_or_ungranted_route_is_404_and_delete_works(client: Client, make_caller, make_route) -> None:
    make_route(name="hidden")
    caller = make_caller()
    assert call(client, "get", ROUTES + "hidden", caller.key).status_code == 404
    admin = make_caller(consumer="root", is_admin=True)
    assert call(client, "get", ROUTES + "hidden", admin.key).status_code == 200
    assert call(client, "delete", ROUTES + "hidden", admin.key).status_code == 200
    missing = call(client, "delete", ROUTES + "hidden", admin.key)
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"

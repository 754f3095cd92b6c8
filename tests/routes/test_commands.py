"""Management commands: issue_key and seed_demo."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from routes.keys import KEY_PREFIX, hash_key
from routes.models import ApiKey, Consumer, Route, RouteGrant, Team

pytestmark = pytest.mark.django_db


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_issue_key_creates_team_and_service_consumer_grants_route_and_prints_the_key_last(
    make_route: Callable[..., Route],
) -> None:
    route = make_route(name="chat")
    out, err = run("issue_key", "--team", "payments", "--consumer", "billing-svc", "--service",
                   "--environment", "production", "--admin", "--route", "chat", "--name", "ci")
    key = out.strip().splitlines()[-1]
    assert key.startswith(KEY_PREFIX)

    consumer = Consumer.objects.get(team__name="payments", name="billing-svc")
    assert (consumer.kind, consumer.environment) == (Consumer.Kind.SERVICE, "production")
    assert RouteGrant.objects.filter(route=route, consumer=consumer).exists()
    api_key = ApiKey.objects.get(consumer=consumer)
    assert api_key.hashed_key == hash_key(key)
    assert (api_key.is_admin, api_key.name) == (True, "ci")
    assert key.startswith(f"{KEY_PREFIX}{api_key.prefix}_")
    assert key not in err  # the key goes to stdout only, so `$(manage.py issue_key ...)` captures it


def test_issue_key_defaults_to_a_development_person_without_admin(make_route: Callable[..., Route]) -> None:
    out, _ = run("issue_key", "--team", "t", "--consumer", "c")
    consumer = Consumer.objects.get(name="c")
    assert (consumer.kind, consumer.environment) == (Consumer.Kind.PERSON, "development")
    api_key = ApiKey.objects.get()
    assert not api_key.is_admin
    assert api_key.hashed_key == hash_key(out.strip().splitlines()[-1])
    assert not RouteGrant.objects.exists()


def test_issue_key_grants_several_routes_and_reuses_existing_team_and_consumer(
    make_route: Callable[..., Route],
) -> None:
    make_route(name="a")
    make_route(name="b")
    run("issue_key", "--team", "t", "--consumer", "c", "--route", "a")
    run("issue_key", "--team", "t", "--consumer", "c", "--route", "a", "--route", "b")
    assert Team.objects.count() == 1 and Consumer.objects.count() == 1
    assert ApiKey.objects.count() == 2
    assert sorted(RouteGrant.objects.values_list("route__name", flat=True)) == ["a", "b"]


def test_issue_key_with_an_unknown_route_fails_and_creates_nothing(make_route: Callable[..., Route]) -> None:
    make_route(name="chat")
    with pytest.raises(CommandError, match="Route 'nope' does not exist"):
        run("issue_key", "--team", "t", "--consumer", "c", "--route", "chat", "--route", "nope")
    assert not Team.objects.exists()
    assert not Consumer.objects.exists()
    assert not ApiKey.objects.exists()
    assert not RouteGrant.objects.exists()


@pytest.mark.parametrize("args", [["--team", "bad team", "--consumer", "c"], ["--team", "t", "--consumer", "c/d"]])
def test_issue_key_with_an_invalid_name_is_a_command_error(args: list[str]) -> None:
    with pytest.raises(CommandError, match="Invalid"):
        run("issue_key", *args)
    assert not Team.objects.exists()
    assert not ApiKey.objects.exists()


def test_issue_key_requires_team_and_consumer() -> None:
    with pytest.raises(CommandError):
        run("issue_key", "--team", "t")


def test_seed_demo_is_idempotent_and_grants_three_mock_routes_to_team_demo(django_user_model: Any) -> None:
    first, _ = run("seed_demo")
    second, _ = run("seed_demo")

    routes = Route.objects.order_by("name")
    assert [(r.name, r.provider, r.route_type) for r in routes] == [
        ("mock-chat", "mock", "llm/v1/chat"),
        ("mock-completions", "mock", "llm/v1/completions"),
        ("mock-embeddings", "mock", "llm/v1/embeddings"),
    ]
    demo = Team.objects.get(name="demo")
    assert set(RouteGrant.objects.filter(team=demo).values_list("route__name", flat=True)) == {
        "mock-chat", "mock-completions", "mock-embeddings",
    }
    assert RouteGrant.objects.count() == 3
    from usage.models import Limit

    assert sorted(Limit.objects.values_list("route__name", "scope", "period", "calls", "tokens")) == [
        (name, "route_user", "minute", 60, 20_000) for name in ("mock-chat", "mock-completions", "mock-embeddings")
    ]
    assert Consumer.objects.filter(team=demo, name="alice").count() == 1
    assert get_user_model().objects.filter(username="admin", is_superuser=True).count() == 1

    # Each run prints a fresh demo key that works (its hash is stored).
    keys = [next(line.strip() for line in out.splitlines() if line.strip().startswith(KEY_PREFIX))
            for out in (first, second)]
    assert keys[0] != keys[1]
    assert {k.hashed_key for k in ApiKey.objects.all()} == {hash_key(k) for k in keys}


def test_seed_demo_keeps_an_existing_admin_password(django_user_model: Any) -> None:
    django_user_model.objects.create_user("admin", password="not-the-demo-one", is_superuser=True, is_staff=True)
    run("seed_demo")
    assert django_user_model.objects.get(username="admin").check_password("not-the-demo-one")


def test_issue_key_without_flags_keeps_an_existing_consumers_kind_and_environment() -> None:
    run("issue_key", "--team", "t", "--consumer", "svc", "--service", "--environment", "production")
    run("issue_key", "--team", "t", "--consumer", "svc")
    consumer = Consumer.objects.get(name="svc")
    assert (consumer.kind, consumer.environment) == (Consumer.Kind.SERVICE, "production")

"""Shared fixtures: factories for routes, consumers and keys; the real gateway server for e2e tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.celery_worker import CeleryWorker, start_celery_worker, usage_pipeline_env
from tests.celery_worker import cleanup as celery_cleanup
from tests.gateway_server import GatewayServer, start_gateway_server


@dataclass(frozen=True)
class Caller:
    """A consumer with a fresh key (the plaintext is kept for the test to send)."""

    key: str
    consumer: Any
    api_key: Any

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture
def make_route(db: None) -> Callable[..., Any]:
    from routes import services

    def make(name: str = "chat", route_type: str = "llm/v1/chat", provider: str = "mock",
             model_name: str = "mock-1", config: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        return services.route_create(
            name=name, route_type=route_type, provider=provider, model_name=model_name, config=config or {},
            **kwargs,
        )

    return make


@pytest.fixture
def make_caller(db: None) -> Callable[..., Caller]:
    from routes import services

    def make(team: str = "team-a", consumer: str = "alice", *, routes: tuple[Any, ...] = (),
             is_admin: bool = False, environment: str = "development", kind: str = "person",
             **key_kwargs: Any) -> Caller:
        t = services.team_get_or_create(name=team)
        c = services.consumer_get_or_create(team=t, name=consumer, kind=kind, environment=environment)
        for route in routes:
            services.route_grant(route=route, consumer=c)
        issued = services.api_key_issue(consumer=c, is_admin=is_admin, **key_kwargs)
        return Caller(key=issued.plaintext, consumer=c, api_key=issued.api_key)

    return make


@pytest.fixture(scope="session")
def usage_worker(django_db_setup: None, django_db_blocker: Any) -> Iterator[CeleryWorker | None]:
    """With REDIS_URL: the real Celery worker draining the session's usage stream into the test
    database (None without Redis, where the server writes usage to the database itself)."""
    env = usage_pipeline_env()
    if not env:
        yield None
        return
    with django_db_blocker.unblock():
        worker = start_celery_worker(env)
    try:
        yield worker
    finally:
        worker.stop()
        celery_cleanup(env)


@pytest.fixture(scope="session")
def gateway_server(django_db_setup: None, django_db_blocker: Any,
                   usage_worker: CeleryWorker | None) -> Iterator[GatewayServer]:
    """The real ASGI server (uvicorn, subprocess) on the test database. Use with `transactional_db`.

    With REDIS_URL it records usage on the session's Redis stream, which `usage_worker` drains."""
    with django_db_blocker.unblock():
        server = start_gateway_server(usage_pipeline_env())
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[Any]:
    """A fake vendor server (OpenAI / Azure wire formats) on a real port, shared by the session."""
    from tests.fake_upstream.server import FakeUpstream

    upstream = FakeUpstream().start()
    try:
        yield upstream
    finally:
        upstream.stop()


@pytest.fixture(autouse=True)
def _no_admin_rate_limits(settings: Any) -> None:
    """django-ratelimit is off in tests (its counters live in the shared cache and would carry over
    between tests and runs); tests of the guardrails turn it on with a cache of their own."""
    settings.RATELIMIT_ENABLE = False

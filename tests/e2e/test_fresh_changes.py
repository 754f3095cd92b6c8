"""A key issued or a route created a moment ago answers at once (the seed's create-then-query),
without waiting for the next snapshot poll."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

import gateway_client
from tests.e2e.test_serving_mlflow_routes import post
from tests.gateway_server import GatewayServer, start_gateway_server

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def slow_poll_server(django_db_setup: None, django_db_blocker: Any) -> Iterator[GatewayServer]:
    """Polls for changes only every 30 s: whatever answers sooner came from the miss check."""
    with django_db_blocker.unblock():
        server = start_gateway_server({"GATEWAY_SNAPSHOT_POLL_SECONDS": "30"})
    try:
        yield server
    finally:
        server.stop()


def test_created_route_and_issued_key_answer_at_once(slow_poll_server, make_route, make_caller,
                                                     monkeypatch) -> None:
    admin = make_caller(consumer="platform", is_admin=True)  # issued after the server started
    monkeypatch.setenv("GATEWAY_API_KEY", admin.key)
    gateway_client.set_gateway_uri(slow_poll_server.url)
    time.sleep(0.1)
    gateway_client.create_route(name="fresh-route", route_type="llm/v1/completions",
                                data={"name": "gpt-4", "provider": "mock", "mock_config": {}})
    time.sleep(0.1)  # past the miss-check interval of any earlier miss
    answer = gateway_client.query(route="fresh-route", data={"prompt": "Classify: great value!"})
    assert answer["candidates"][0]["text"]

    route = make_route(name="fresh-chat")
    caller = make_caller(consumer="newcomer", routes=(route,))
    time.sleep(0.1)
    response = post(slow_poll_server, "fresh-chat", caller.key, {"messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200, response.text

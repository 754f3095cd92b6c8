"""Limits on streamed answers: reserved before the stream opens, settled when it ends to the tokens
actually produced (a finished stream, and a client that goes away mid-stream)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.test_limits import admin_api, wait_limited
from tests.e2e.test_serving_mlflow_routes import ready, wait_for
from usage.models import Limit

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BODY = {"model": "ls-chat", "messages": [{"role": "user", "content": "Hello world"}], "max_tokens": 20,
        "stream": True}


def used_tokens(server: Any, key: str) -> int:
    body = admin_api(server, key, "GET", "/api/2.0/gateway/limits/ls-chat").json()
    return int(body["budgets"][0]["used"]["tokens"])


def test_stream_is_reserved_then_settled_to_what_it_produced(gateway_server, make_route, make_caller) -> None:
    route = make_route(name="ls-chat")
    alice = make_caller(consumer="alice", routes=(route,))
    probe = make_caller(consumer="probe", routes=(route,))
    Limit.objects.create(scope=Limit.Scope.ROUTE_PER_CONSUMER, route=route, tokens=1000, period="day")
    ready(gateway_server, alice.key, "ls-chat")
    wait_limited(gateway_server, probe.key, "ls-chat")

    with gateway_server.client() as client:
        response = client.post("/v1/chat/completions", json=BODY, headers=alice.headers)
        assert response.status_code == 200 and response.text.rstrip().endswith("data: [DONE]")
        assert response.headers["x-ratelimit-limit"] == "1000"
    # Reserved 2 + 20; the mock's answer "This is a mock answer to: Hello world" used 2 + 9.
    assert wait_for(lambda: used_tokens(gateway_server, alice.key) == 11)

    # A client that goes away after the first chunk: charged what was produced, not the reservation.
    with httpx.Client(base_url=gateway_server.url, timeout=10) as client, \
            client.stream("POST", "/v1/chat/completions", json=BODY, headers=alice.headers) as stream:
        assert stream.status_code == 200
        next(stream.iter_raw())
    assert wait_for(lambda: 11 < used_tokens(gateway_server, alice.key) < 11 + 22)

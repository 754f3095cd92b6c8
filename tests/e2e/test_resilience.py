"""Retries, fallbacks and per-route timeouts on the real server; the usage record names who answered."""

from __future__ import annotations

import time
from typing import Any

import pytest

from routes import services
from tests.e2e.test_serving_mlflow_routes import KEY, post, ready, usage_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BODY = {"messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
def oa(fake_upstream) -> dict[str, Any]:
    fake_upstream.reset()
    return {"openai_api_key": KEY, "openai_api_base": fake_upstream.openai_base}


def test_a_passing_5xx_is_retried_and_the_caller_never_sees_it(gateway_server, make_route, make_caller, oa,
                                                               fake_upstream) -> None:
    route = make_route(name="r-retry", provider="openai", model_name="gpt-4o-mini", config=oa, max_retries=2)
    caller = make_caller(routes=(route,))
    ready(gateway_server, caller.key, "r-retry")
    fake_upstream.reset()
    fake_upstream.add_fault("503", times=2)
    response = post(gateway_server, "r-retry", caller.key, BODY)
    assert response.status_code == 200, response.text
    assert len(fake_upstream.requests) == 3


def test_the_fallback_answers_when_the_primary_fails_and_the_record_says_so(gateway_server, make_route, make_caller,
                                                                            oa, fake_upstream) -> None:
    backup = make_route(name="r-backup", model_name="mock-backup")
    primary = make_route(name="r-primary", provider="openai", model_name="gpt-4o-mini", config=oa, max_retries=1)
    services.route_fallbacks_set(route=primary, fallbacks=[backup])
    caller = make_caller(routes=(primary,))  # not granted the fallback: the platform chose it, not the caller
    ready(gateway_server, caller.key, "r-primary")
    time.sleep(0.5)  # the fallback list reaches the snapshot
    fake_upstream.reset()
    fake_upstream.add_fault("500", times=5)
    response = post(gateway_server, "r-primary", caller.key, BODY)
    assert response.status_code == 200, response.text
    assert response.json()["metadata"]["model"] == "mock-backup"
    assert len(fake_upstream.requests) == 2  # the first try and its one retry
    event = usage_for(response)
    assert (event.route_name, event.provider, event.model) == ("r-primary", "mock", "mock-backup")


def test_a_route_timeout_is_504_at_that_route_s_limit(gateway_server, make_route, make_caller, oa,
                                                      fake_upstream) -> None:
    route = make_route(name="r-slow", provider="openai", model_name="gpt-4o-mini", config=oa, max_retries=3,
                       timeouts=services.RouteTimeouts(total=0.5))
    caller = make_caller(routes=(route,))
    ready(gateway_server, caller.key, "r-slow")
    fake_upstream.reset()
    fake_upstream.add_fault("sleep-3")
    started = time.monotonic()
    response = post(gateway_server, "r-slow", caller.key, BODY)
    assert response.status_code == 504 and response.json()["error_code"] == "UPSTREAM_TIMEOUT"
    assert time.monotonic() - started < 2.0  # not retried: a timeout fails over, it does not wait again
    assert len(fake_upstream.requests) == 1

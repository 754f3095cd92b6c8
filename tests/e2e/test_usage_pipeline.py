"""The usage pipeline end to end on the real server: every call (streamed, failed or refused) becomes
exactly one event with its price and cost, and reports equal the raw sum.

With REDIS_URL (the production shape: PostgreSQL, Redis, a real Celery worker): the worker is killed
with SIGKILL in the middle of a drain (its batch read, its transaction open) and started again; the
batch is delivered again and counted once. Without Redis (the embedded demo) the server writes the
events itself.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
import redis
from django.db import transaction
from django.utils import timezone

import gateway_client
from tests.e2e.test_serving_mlflow_routes import KEY, ready, wait_for
from usage.models import ModelPrice, UsageEvent
from usage.pricing import Price, cost_usd
from usage.reports import ReportFilters, raw_totals
from usage.rollup import usage_rollup
from usage.stream import BATCH_FIELD, EVENT_FIELD

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PRICE = Price(Decimal("0.15"), Decimal("0.60"))  # what the test's ModelPrice says for gpt-4o-mini
MESSAGES = [{"role": "user", "content": "How much did this cost?"}]


@dataclass(frozen=True)
class Call:
    request_id: str
    status: int
    stream: bool = False


@pytest.fixture
def world(make_route, make_caller, gateway_server, fake_upstream) -> dict[str, Any]:
    ModelPrice.objects.create(provider="openai", model="gpt-4o-mini", input_per_mtok=PRICE.input_per_mtok,
                              output_per_mtok=PRICE.output_per_mtok, effective_from=timezone.now() - timedelta(days=1),
                              source="test")
    oa = {"openai_api_key": KEY, "openai_api_base": fake_upstream.openai_base}
    routes = (make_route(name="u-mock"), make_route(name="u-oa", provider="openai", model_name="gpt-4o-mini",
                                                     config=oa))
    make_route(name="u-hidden")
    caller = make_caller(team="usage-team", consumer="spender", routes=routes)
    admin = make_caller(team="usage-admins", consumer="ops", is_admin=True)
    ready(gateway_server, caller.key, "u-mock", "u-oa")
    time.sleep(1.0)  # the server's price table refreshes every 0.2 s in tests
    fake_upstream.reset()
    return {"caller": caller, "admin": admin, "team_id": caller.consumer.team_id}


def drive_calls(server: Any, fake_upstream: Any, key: str) -> list[Call]:
    """28 calls: successes through two API families, streams, upstream failures, refusals."""
    calls: list[Call] = []
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=server.url, timeout=30) as client:

        def post(path: str, body: Any, headers: dict[str, str] = auth) -> None:
            response = client.post(path, json=body, headers=headers)
            calls.append(Call(response.headers["x-request-id"], response.status_code))

        def stream(route: str) -> None:
            body = {"model": route, "messages": MESSAGES, "stream": True}
            with client.stream("POST", "/v1/chat/completions", json=body, headers=auth) as response:
                text = "".join(response.iter_lines())
                assert "[DONE]" in text
                calls.append(Call(response.headers["x-request-id"], response.status_code, stream=True))

        for i in range(10):
            post("/gateway/u-mock/invocations", {"messages": [{"role": "user", "content": f"hello {i}"}]})
        for i in range(5):
            post("/v1/chat/completions", {"model": "u-oa", "messages": [{"role": "user", "content": f"q {i}"}]})
        for route in ("u-mock", "u-oa", "u-mock", "u-oa"):
            stream(route)
        # The vendor refuses the route's key: 502 UPSTREAM_AUTH_FAILED (never retried, so one fault a call).
        fake_upstream.add_fault("401", times=2)
        for _ in range(2):
            post("/gateway/u-oa/invocations", {"messages": MESSAGES})  # 502
        for body in ({"messages": []}, {"prompt": "wrong type"}, {"messages": MESSAGES, "temperature": 9}):
            post("/gateway/u-mock/invocations", body)  # 400
        post("/gateway/no-such-route/invocations", {"messages": MESSAGES})  # 404
        post("/v1/chat/completions", {"model": "no-such-route", "messages": MESSAGES})  # 404
        post("/gateway/u-hidden/invocations", {"messages": MESSAGES})  # 403
        post("/gateway/u-mock/invocations", {"messages": MESSAGES}, headers={"Authorization": "Bearer gw-nope_x"})
    assert len(calls) == 28
    assert sorted({c.status for c in calls}) == [200, 400, 401, 403, 404, 502]
    return calls


def check_events_and_reports(calls: list[Call], world: dict[str, Any], server: Any) -> None:
    ids = [c.request_id for c in calls]
    events = {e.request_id: e for e in UsageEvent.objects.filter(request_id__in=ids)}
    assert len(events) == len(calls) == len(set(ids))  # exactly one event per call
    for call in calls:
        event = events[call.request_id]
        assert event.status_code == call.status and event.stream == call.stream
        if call.stream:
            assert event.ttft_ms is not None and event.output_tokens > 0
        if event.provider == "openai" and event.status_code == 200:
            assert event.input_price_per_mtok == PRICE.input_per_mtok
            assert event.cost_usd == cost_usd(PRICE, input_tokens=event.input_tokens,
                                              output_tokens=event.output_tokens) > 0
        elif event.provider == "mock":
            assert event.cost_usd == 0 and event.input_price_per_mtok == 0  # free, and priced as such

    team = world["team_id"]
    # The team's raw events: these calls and the fixture's readiness probes (drained long before).
    team_events = list(UsageEvent.objects.filter(team_id=team))
    assert {e.request_id for e in team_events} >= {i for i in ids if events[i].team_id == team}
    raw = {
        "calls": len(team_events),
        "errors": sum(e.status_code >= 400 for e in team_events),
        "input_tokens": sum(e.input_tokens for e in team_events),
        "output_tokens": sum(e.output_tokens for e in team_events),
        "total_tokens": sum(e.total_tokens for e in team_events),
        "cost_usd": sum((e.cost_usd for e in team_events), Decimal("0")),
    }
    assert sum(e.team_id == team for e in events.values()) == 27  # all but the unknown key's call
    assert raw["cost_usd"] > 0
    assert raw_totals(filters=ReportFilters(team_id=team)) == raw
    today = timezone.now().date()

    def api_totals() -> dict[str, Any]:
        # The team's own key, through the Python client; and the admin key over plain HTTP.
        client = gateway_client.GatewayClient(server.url, api_key=world["caller"].key)
        try:
            report = client.get_usage("route", start=today - timedelta(days=1), end=today + timedelta(days=1))
        finally:
            client.close()
        assert isinstance(report, gateway_client.UsageReport)
        with httpx.Client(base_url=server.url, timeout=30) as http:
            admin = http.get("/api/2.0/gateway/usage/", headers={"Authorization": f"Bearer {world['admin'].key}"},
                             params={"group_by": "day", "team": str(team), "start": str(today - timedelta(days=1)),
                                     "end": str(today + timedelta(days=1))}).json()
        assert {k: (Decimal(v) if k == "cost_usd" else v) for k, v in admin["totals"].items()} == report.totals
        assert sum((r["cost_usd"] for r in report.rows), Decimal("0")) == report.totals["cost_usd"]
        return report.totals

    assert api_totals() == raw
    usage_rollup()
    assert api_totals() == raw  # the same once rolled up


def test_every_call_is_one_event_and_reports_equal_the_raw_sum(gateway_server, fake_upstream, world) -> None:
    calls = drive_calls(gateway_server, fake_upstream, world["caller"].key)
    ids = [c.request_id for c in calls]
    wait_for(lambda: UsageEvent.objects.filter(request_id__in=ids).count() == len(ids), timeout=20)
    check_events_and_reports(calls, world, gateway_server)


def stream_request_ids(r: redis.Redis, stream: str) -> list[str]:
    """The request ids of the events in the stream, in order (entries hold a batch or one event)."""
    found: list[str] = []
    for _, fields in r.xrange(stream):
        if BATCH_FIELD in fields:
            found += [e["request_id"] for e in orjson.loads(fields[BATCH_FIELD])]
        elif EVENT_FIELD in fields:
            found.append(orjson.loads(fields[EVENT_FIELD])["request_id"])
    return found


@pytest.fixture
def redis_worker(usage_worker: Any) -> Any:
    if usage_worker is None:
        pytest.skip("REDIS_URL is not set: no Redis stream and no Celery worker in the embedded (SQLite) mode")
    return usage_worker


def test_worker_killed_mid_drain_and_restarted_loses_and_doubles_nothing(redis_worker, gateway_server, fake_upstream,
                                                                         world) -> None:
    usage_worker = redis_worker
    stream = usage_worker.env["GATEWAY_USAGE_STREAM"]
    r = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        usage_worker.stop()  # events pile up in the stream while we call
        calls = drive_calls(gateway_server, fake_upstream, world["caller"].key)
        ids = [c.request_id for c in calls]
        wait_for(lambda: set(ids) <= set(stream_request_ids(r, stream)), timeout=10)
        entries = r.xlen(stream)  # serving processes append a batch of events per entry
        first_request = stream_request_ids(r, stream)[0]

        # Hold the first event's row: the worker's insert of its batch waits on it (PostgreSQL: the
        # conflicting uncommitted row; SQLite: the write lock) with the batch read but not committed.
        with transaction.atomic():
            UsageEvent.objects.create(request_id=first_request, created_at=timezone.now(), api_family="blocker",
                                      status_code=299)
            usage_worker.start()
            wait_for(lambda: r.xpending(stream, "usage-drain")["pending"] == entries, timeout=20)
            time.sleep(0.3)  # well inside its insert
            usage_worker.kill()  # SIGKILL mid-batch
            transaction.set_rollback(True)  # and the blocker goes

        assert UsageEvent.objects.filter(request_id__in=ids).count() == 0  # nothing committed by the dead worker
        assert r.xpending(stream, "usage-drain")["pending"] == entries  # still pending to the dead consumer

        usage_worker.start()  # claims the dead consumer's entries once idle (1 s in tests)
        wait_for(lambda: UsageEvent.objects.filter(request_id__in=ids).count() == len(ids), timeout=30)
        wait_for(lambda: r.xpending(stream, "usage-drain")["pending"] == 0, timeout=10)
        assert r.xlen(stream) == 0
        assert re.search(r"claimed [1-9]\d* entries left pending by another consumer", usage_worker.log())
        time.sleep(1.5)  # any late redelivery would land now
        check_events_and_reports(calls, world, gateway_server)
    finally:
        r.close()
        if usage_worker.process is None or usage_worker.process.poll() is not None:
            usage_worker.start()

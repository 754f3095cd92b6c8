"""Limits on the real server: 429 in each family's shape with X-RateLimit-* headers, the limits API
(MLflow's shape, extended), production-only routes, listings, fail modes, and exactness across
server processes sharing Redis (200 concurrent calls against a limit of 50: exactly 50 pass)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.e2e.test_serving_mlflow_routes import post, ready, wait_for
from tests.gateway_server import GatewayServer, flush_limit_counters, start_gateway_server
from usage.models import Limit

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

REDIS_URL = os.environ.get("REDIS_URL", "")
CHAT = {"messages": [{"role": "user", "content": "Hello world"}], "max_tokens": 20}
# The mock counts "Hello world" as 2 tokens and answers "This is a mock answer to: Hello world" (9):
# each call reserves 2 + 20 = 22 tokens and uses 2 + 9 = 11.
RESERVED, USED = 22, 11


@pytest.fixture(autouse=True, scope="module")
def _flush_counters() -> Iterator[None]:
    yield
    flush_limit_counters()


@pytest.fixture
def server(gateway_server: GatewayServer) -> GatewayServer:
    return gateway_server


def admin_api(server: GatewayServer, key: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    with server.client() as client:
        return client.request(method, path, headers={"Authorization": f"Bearer {key}"}, **kwargs)


def set_limits(server: GatewayServer, admin_key: str, route: str, limits: list[dict[str, Any]]) -> dict[str, Any]:
    response = admin_api(server, admin_key, "POST", "/api/2.0/gateway/limits/", json={"route": route, "limits": limits})
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_limited(server: GatewayServer, probe_key: str, route: str) -> None:
    """Until the server's snapshot has the route's limits (a probe consumer's call shows the headers)."""
    wait_for(lambda: "x-ratelimit-limit" in post(server, route, probe_key, CHAT).headers, timeout=10)


@pytest.fixture
def setup(make_route, make_caller) -> dict[str, Any]:
    route = make_route(name="lim-chat")
    return {
        "route": route,
        "alice": make_caller(consumer="alice", routes=(route,)),
        "probe": make_caller(consumer="probe", routes=(route,)),
        "admin": make_caller(team="platform", consumer="ops", is_admin=True),
    }


def test_calls_limit_answers_429_in_each_family_with_rate_headers(server, setup) -> None:
    alice, admin = setup["alice"], setup["admin"]
    ready(server, alice.key, "lim-chat")
    set_limits(server, admin.key, "lim-chat", [{"key": "user", "renewal_period": "day", "calls": 3}])
    wait_limited(server, setup["probe"].key, "lim-chat")

    remaining = []
    for _ in range(3):
        ok = post(server, "lim-chat", alice.key, CHAT)
        assert ok.status_code == 200, ok.text
        assert ok.headers["x-ratelimit-limit"] == "3"
        remaining.append(ok.headers["x-ratelimit-remaining"])
        assert 1 <= int(ok.headers["x-ratelimit-reset"]) <= 86_400
    assert remaining == ["2", "1", "0"]

    refused = post(server, "lim-chat", alice.key, CHAT)
    assert refused.status_code == 429
    body = refused.json()
    assert body["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert "3 calls per day for consumer 'alice' on route 'lim-chat'" in body["message"]
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-remaining"] == "0"
    assert refused.headers["x-ratelimit-scope"] == "calls per day, consumer 'alice' on route 'lim-chat'"

    with server.client() as client:
        headers = alice.headers
        v1 = client.post("/v1/chat/completions", headers=headers, json={"model": "lim-chat", **CHAT})
        deployments = client.post("/endpoints/lim-chat/invocations", headers=headers, json=CHAT)
    assert v1.status_code == 429 and v1.json()["error"]["type"] == "rate_limit_error"
    assert v1.json()["error"]["code"] == "request_limit_exceeded" and "retry-after" in v1.headers
    assert deployments.status_code == 429 and deployments.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    # Other consumers have their own per-consumer counter.
    assert post(server, "lim-chat", setup["probe"].key, CHAT).status_code == 200


def test_limits_api_for_admins_and_consumers(server, setup, make_caller) -> None:
    alice, admin = setup["alice"], setup["admin"]
    ready(server, alice.key, "lim-chat")
    limits = [
        {"key": "route", "renewal_period": "minute", "calls": 100},
        {"key": "user", "renewal_period": "day", "tokens": 1000, "usd": "2.50"},
    ]
    config = set_limits(server, admin.key, "lim-chat", limits)
    assert config["route"] == "lim-chat"
    assert config["limits"] == [{"key": "route", "renewal_period": "minute", "calls": 100, "tokens": None,
                                 "usd": None, "scope": "route"}]
    assert config["budgets"] == [{"key": "user", "renewal_period": "day", "calls": None, "tokens": 1000,
                                  "usd": "2.5", "scope": "route_user"}]
    assert admin_api(server, admin.key, "GET", "/api/2.0/gateway/limits/lim-chat").json() == config

    # The route object shows MLflow's Limit for its calls limit.
    route = admin_api(server, alice.key, "GET", "/api/2.0/gateway/routes/lim-chat").json()
    assert route["limit"] == {"calls": 100, "renewal_period": "minute", "key": "route"}
    endpoint = admin_api(server, alice.key, "GET", "/api/2.0/endpoints/lim-chat").json()
    assert endpoint["limit"] == {"calls": 100, "renewal_period": "minute", "key": "route"}

    wait_limited(server, setup["probe"].key, "lim-chat")
    for _ in range(2):
        assert post(server, "lim-chat", alice.key, CHAT).status_code == 200
    mine = wait_for(lambda: (lambda r: r if r["budgets"][0]["used"]["tokens"] == 2 * USED else None)(
        admin_api(server, alice.key, "GET", "/api/2.0/gateway/limits/lim-chat").json()))
    budget = mine["budgets"][0]
    assert budget["applies_to"] == "consumer 'alice' on route 'lim-chat'"
    assert budget["remaining"]["tokens"] == 1000 - 2 * USED and budget["remaining"]["calls"] is None
    assert budget["used"]["usd"] == "0"  # the mock is free unless priced
    assert budget["reset_at"].endswith("T00:00:00Z") and budget["resets_in_seconds"] <= 86_400
    calls = mine["limits"][0]
    assert calls["scope"] == "route" and calls["used"]["calls"] == 3  # the probe's call counts route-wide
    assert calls["remaining"]["calls"] == 97

    # Replacing: the list is the route's whole configuration.
    assert set_limits(server, admin.key, "lim-chat", [])["limits"] == []
    assert admin_api(server, admin.key, "GET", "/api/2.0/gateway/routes/lim-chat").json()["limit"] is None


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"route": "lim-chat", "limits": [{"key": "org", "calls": 1}]}, 400, "INVALID_PARAMETER_VALUE"),
    ({"route": "lim-chat", "limits": [{"renewal_period": "hour", "calls": 1}]}, 400, "INVALID_PARAMETER_VALUE"),
    ({"route": "lim-chat", "limits": [{"key": "user"}]}, 400, "INVALID_PARAMETER_VALUE"),
    ({"route": "lim-chat", "limits": [{"calls": -1}]}, 400, "INVALID_PARAMETER_VALUE"),
    ({"route": "lim-chat", "limits": [{"usd": "ten"}]}, 400, "INVALID_PARAMETER_VALUE"),
    ({"route": "lim-chat", "limits": [{"calls": 1}, {"calls": 2, "key": "route"}]}, 400, "INVALID_PARAMETER_VALUE"),
    ({"route": "nope", "limits": []}, 404, "RESOURCE_DOES_NOT_EXIST"),
    ({"limits": []}, 400, "INVALID_PARAMETER_VALUE"),
])
def test_limits_api_refuses_bad_input(server, setup, body, status, code) -> None:
    response = admin_api(server, setup["admin"].key, "POST", "/api/2.0/gateway/limits/", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error_code"] == code


def test_only_admin_keys_set_limits_and_consumers_see_only_granted_routes(server, setup, make_route) -> None:
    make_route(name="lim-hidden")
    alice = setup["alice"]
    denied = admin_api(server, alice.key, "POST", "/api/2.0/gateway/limits/",
                       json={"route": "lim-chat", "limits": [{"calls": 1000}]})
    assert denied.status_code == 403 and denied.json()["error_code"] == "PERMISSION_DENIED"
    assert admin_api(server, alice.key, "GET", "/api/2.0/gateway/limits/lim-hidden").status_code == 404
    assert admin_api(server, "gw-nope_0", "GET", "/api/2.0/gateway/limits/lim-chat").status_code == 401
    assert not Limit.objects.exists()


def test_listings_show_only_routes_granted_to_the_consumer_or_its_team(server, make_route, make_caller) -> None:
    from routes import services

    mine, teams, other = make_route(name="acc-mine"), make_route(name="acc-team"), make_route(name="acc-other")
    prod_only = make_route(name="acc-prod", production_only=True)
    caller = make_caller(team="acc", consumer="bob", routes=(mine, prod_only))
    services.route_grant(route=teams, team=caller.consumer.team)
    make_caller(team="elsewhere", consumer="eve", routes=(other,))
    ready(server, caller.key, "acc-mine", "acc-team")
    with server.client(headers=caller.headers) as client:
        routes = {r["name"] for r in client.get("/api/2.0/gateway/routes/").json()["routes"]}
        endpoints = {e["name"] for e in client.get("/api/2.0/endpoints/").json()["endpoints"]}
        models = {m["id"] for m in client.get("/v1/models").json()["data"]}
        assert client.get("/api/2.0/gateway/routes/acc-other").status_code == 404
        assert client.get("/v1/models/acc-other").status_code == 404
    # A development consumer does not see (or reach) the production-only route even though it is granted.
    assert routes == endpoints == models == {"acc-mine", "acc-team"}
    assert post(server, "acc-other", caller.key, CHAT).status_code == 403


def test_production_only_route_serves_production_consumers_only(server, make_route, make_caller) -> None:
    route = make_route(name="prod-chat", production_only=True)
    dev = make_caller(consumer="dev", routes=(route,), environment="development")
    prod = make_caller(consumer="prod", routes=(route,), environment="production", kind="service")
    ready(server, prod.key, "prod-chat")
    refused = post(server, "prod-chat", dev.key, CHAT)
    assert refused.status_code == 403
    assert "production consumers only" in refused.json()["message"]
    assert post(server, "prod-chat", prod.key, CHAT).status_code == 200


# ---- fail modes: a limits store that cannot be reached


@pytest.fixture(scope="module")
def dead_redis_servers(django_db_setup: None, django_db_blocker: Any) -> Iterator[dict[str, GatewayServer]]:
    env = {"REDIS_URL": "redis://127.0.0.1:1/0", "GATEWAY_LIMITS_REDIS_TIMEOUT_SECONDS": "0.2"}
    with django_db_blocker.unblock():
        closed = start_gateway_server(env)
        opened = start_gateway_server({**env, "GATEWAY_LIMITS_FAIL_MODE": "open"})
    try:
        yield {"closed": closed, "open": opened}
    finally:
        closed.stop()
        opened.stop()


def test_unreachable_redis_fails_closed_by_default_and_open_when_configured(dead_redis_servers, setup) -> None:
    Limit.objects.create(scope=Limit.Scope.ROUTE, route=setup["route"], calls=1000, period="day")
    unlimited = setup["route"].__class__.objects.create(name="lim-free", route_type="llm/v1/chat", provider="mock",
                                                        model_name="mock-1")
    from routes import services

    services.route_grant(route=unlimited, consumer=setup["alice"].consumer)
    alice = setup["alice"]
    closed, opened = dead_redis_servers["closed"], dead_redis_servers["open"]
    response = wait_for(
        lambda: (lambda r: r if r.status_code == 503 else None)(post(closed, "lim-chat", alice.key, CHAT)), timeout=10
    )
    assert response.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    # No limit on this route: no store needed, it answers.
    wait_for(lambda: post(closed, "lim-free", alice.key, CHAT).status_code == 200, timeout=10)
    wait_for(lambda: post(opened, "lim-chat", alice.key, CHAT).status_code == 200, timeout=10)
    assert "LIMITS NOT ENFORCED" in opened.log()


# ---- exactness across processes


def concurrent_posts(server: GatewayServer, route: str, key: str, count: int) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
        async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits,
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            return list(await asyncio.gather(*(client.post(f"/gateway/{route}/invocations", json=CHAT)
                                               for _ in range(count))))

    return asyncio.run(run())


@pytest.fixture
def shared_server(request: pytest.FixtureRequest, django_db_blocker: Any) -> Iterator[Any]:
    """Start a server after the test configured its limits: two processes on Redis, else one process."""
    started: list[GatewayServer] = []

    def start() -> GatewayServer:
        with django_db_blocker.unblock():
            server = start_gateway_server(workers=2 if REDIS_URL else 1)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def spend_the_rest(server: GatewayServer, route: str, key: str) -> int:
    """Sequential calls until three in a row are refused with the last reconciles landed: what a
    budget still lets through once no call is in flight."""
    passed = refused = 0
    while refused < 3:
        if post(server, route, key, CHAT).status_code == 200:
            passed, refused = passed + 1, 0
        else:
            refused += 1
            time.sleep(0.05)  # reconciles ride along within a few milliseconds
    return passed


def used(server: GatewayServer, key: str, route: str) -> dict[str, Any]:
    response = admin_api(server, key, "GET", f"/api/2.0/gateway/limits/{route}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_limit_of_50_lets_exactly_50_of_200_concurrent_calls_through(shared_server, setup) -> None:
    Limit.objects.create(scope=Limit.Scope.ROUTE, route=setup["route"], calls=50, period="day")
    server = shared_server()
    responses = concurrent_posts(server, "lim-chat", setup["alice"].key, 200)
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 50 and statuses.count(429) == 150, sorted(set(statuses))
    assert used(server, setup["alice"].key, "lim-chat")["limits"][0]["used"]["calls"] == 50
    if REDIS_URL:
        assert "--workers" in " ".join(map(str, server.process.args)) and "2" in server.process.args


def test_token_budget_is_never_overshot_under_concurrency(shared_server, setup) -> None:
    cap = 1000
    Limit.objects.create(scope=Limit.Scope.ROUTE_PER_CONSUMER, route=setup["route"], tokens=cap, period="day")
    server = shared_server()
    alice = setup["alice"].key
    passed = 0
    for _ in range(2):  # concurrent waves, then what is left, one call at a time
        passed += sum(r.status_code == 200 for r in concurrent_posts(server, "lim-chat", alice, 100))
    passed += spend_the_rest(server, "lim-chat", alice)
    # Exact accounting: the counter is the real usage of the calls that passed (once the last
    # reconciles, sent after the answers, have landed), never above the cap.
    budget = wait_for(lambda: next((b for b in used(server, alice, "lim-chat")["budgets"]
                                    if b["used"]["tokens"] == passed * USED), None))
    assert budget["used"]["tokens"] <= cap
    # The reservation (22) bounds the real use (11): once spent, at most one more reservation fits.
    assert cap - passed * USED < RESERVED
    assert passed >= cap // RESERVED


def test_money_budget_is_never_overshot_under_concurrency(shared_server, setup) -> None:
    import usage.models

    ModelPrice = getattr(usage.models, "ModelPrice", None)
    if ModelPrice is None:
        pytest.skip("no ModelPrice table yet (the usage pipeline brings the price table)")

    # 1000 / 2000 USD per 1M tokens: a call reserves 2 × 0.001 + 20 × 0.002 = 0.042 USD and costs 0.02.
    ModelPrice.objects.create(provider="mock", model="mock-1", input_per_mtok=Decimal("1000"),
                              output_per_mtok=Decimal("2000"), effective_from="2020-01-01T00:00:00Z")
    budget_usd = Decimal("1.00")
    Limit.objects.create(scope=Limit.Scope.TEAM, team=setup["alice"].consumer.team, usd=budget_usd, period="month")
    server = shared_server()
    alice = setup["alice"].key
    passed = 0
    for _ in range(2):
        responses = concurrent_posts(server, "lim-chat", alice, 100)
        passed += sum(r.status_code == 200 for r in responses)
        refusal = next((r for r in responses if r.status_code == 429), None)
    passed += spend_the_rest(server, "lim-chat", alice)
    assert refusal is not None and "USD 1 per month for team 'team-a'" in refusal.json()["message"]
    expected = passed * Decimal("0.02")
    spent = wait_for(lambda: next((Decimal(b["used"]["usd"]) for b in used(server, alice, "lim-chat")["budgets"]
                                   if Decimal(b["used"]["usd"]) == expected), None))
    assert spent == expected <= budget_usd
    assert budget_usd - spent < Decimal("0.042")  # nothing left that a reservation could use
    assert passed >= int(budget_usd / Decimal("0.042"))


def test_limit_change_reaches_the_server_without_restart(server, setup) -> None:
    alice, admin = setup["alice"], setup["admin"]
    ready(server, alice.key, "lim-chat")
    set_limits(server, admin.key, "lim-chat", [{"key": "user", "renewal_period": "day", "calls": 1}])
    wait_limited(server, setup["probe"].key, "lim-chat")
    assert post(server, "lim-chat", alice.key, CHAT).status_code == 200
    assert post(server, "lim-chat", alice.key, CHAT).status_code == 429
    set_limits(server, admin.key, "lim-chat", [{"key": "user", "renewal_period": "day", "calls": 5}])
    wait_for(lambda: post(server, "lim-chat", alice.key, CHAT).status_code == 200, timeout=10)
    time.sleep(0)


def test_gateway_client_sets_and_reads_limits(server, setup, monkeypatch) -> None:
    import gateway_client

    alice, admin = setup["alice"], setup["admin"]
    ready(server, alice.key, "lim-chat")
    with gateway_client.GatewayClient(server.url, api_key=admin.key) as client:
        config = client.set_limits("lim-chat", [{"key": "user", "renewal_period": "day", "calls": 10},
                                                {"key": "team", "renewal_period": "month", "usd": "25"}])
        got = [(x.calls, x.renewal_period, x.key) for x in config.limits]
        assert got == [(10, "day", "user"), (None, "month", "team")]
        assert config.limits[1].usd == Decimal("25") and config.limits[1].scope == "route_team"
        assert client.get_limits("lim-chat").limits == config.limits
    wait_limited(server, setup["probe"].key, "lim-chat")
    assert post(server, "lim-chat", alice.key, CHAT).status_code == 200
    monkeypatch.setenv("GATEWAY_API_KEY", alice.key)
    gateway_client.set_gateway_uri(server.url)
    def settled() -> Any:
        calls = next(x for x in gateway_client.get_limits("lim-chat").limits if x.calls == 10)
        return calls if calls.used == {"calls": 1, "tokens": USED, "usd": "0"} else None

    calls = wait_for(settled)
    assert calls.remaining is not None
    assert calls.remaining["calls"] == 9 and calls.reset_at is not None
    with pytest.raises(gateway_client.PermissionDeniedError):
        gateway_client.set_limits("lim-chat", [])
    assert gateway_client.get_route("lim-chat").limit is not None


def test_consumer_environment_picks_the_route_credential(server, make_route, make_caller, fake_upstream) -> None:
    from routes import services
    from tests.e2e.test_serving_mlflow_routes import KEY

    route = make_route(name="env-chat", provider="openai", model_name="gpt-4o-mini",
                       config={"openai_api_key": KEY, "openai_api_base": fake_upstream.openai_base})
    services.credential_set(route=route, environment="development", secrets={"openai_api_key": "sk-dev-wrong-key-0000"})
    prod = make_caller(consumer="svc", routes=(route,), environment="production", kind="service")
    dev = make_caller(consumer="dev", routes=(route,), environment="development")
    ready(server, prod.key, "env-chat")
    wait_for(lambda: post(server, "env-chat", dev.key, CHAT).status_code == 502)
    assert post(server, "env-chat", prod.key, CHAT).status_code == 200  # the production key
    refused = post(server, "env-chat", dev.key, CHAT)  # the development key, which the vendor refuses
    assert refused.json()["error_code"] == "UPSTREAM_AUTH_FAILED"

"""`POST /gateway/{name}/invocations` on the real ASGI server: schemas, auth, bad input, upstream faults,
usage records, snapshot refresh — and the credential never showing."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from routes import services
from routes.serving import schemas
from usage.models import UsageEvent

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

KEY = "sk-fake9Qm4Xr7Lp2Vt8Wz6Kd3N"  # FakeUpstream.OPENAI_KEY


def wait_for(predicate: Any, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def usage_for(response: httpx.Response) -> UsageEvent:
    request_id = response.headers["x-request-id"]
    return wait_for(lambda: UsageEvent.objects.filter(request_id=request_id).first())


def post(server: Any, route: str, key: str | None, body: Any, **kwargs: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with server.client() as client:
        if isinstance(body, (bytes, str)):
            return client.post(f"/gateway/{route}/invocations", content=body, headers=headers, **kwargs)
        return client.post(f"/gateway/{route}/invocations", json=body, headers=headers, **kwargs)


def ready(server: Any, key: str, *routes: str) -> None:
    """Wait until the server's snapshot has the new key, routes and grants (it polls every 0.2 s in tests)."""
    for route in routes:
        wait_for(lambda route=route: post(server, route, key, {}).status_code not in (401, 403, 404))


@pytest.fixture
def openai_routes(make_route, fake_upstream) -> dict[str, Any]:
    config = {"openai_api_key": KEY, "openai_api_base": fake_upstream.openai_base}
    fake_upstream.reset()
    return {
        # No retries: these tests pin how each single fault maps (retries are tested on their own).
        "chat": make_route(name="oa-chat", route_type="llm/v1/chat", provider="openai", model_name="gpt-4o-mini",
                           config=config, max_retries=0),
        "completions": make_route(name="oa-comp", route_type="llm/v1/completions", provider="openai",
                                  model_name="gpt-3.5-turbo-instruct", config=config),
        "embeddings": make_route(name="oa-emb", route_type="llm/v1/embeddings", provider="openai",
                                 model_name="text-embedding-3-small", config=config),
    }


def test_three_route_types_through_openai_in_the_25_shape(gateway_server, openai_routes, make_caller,
                                                          fake_upstream) -> None:
    caller = make_caller(routes=tuple(openai_routes.values()))
    ready(gateway_server, caller.key, "oa-chat", "oa-comp", "oa-emb")
    fake_upstream.reset()

    chat = post(gateway_server, "oa-chat", caller.key,
                {"messages": [{"role": "user", "content": "Hi"}], "temperature": 0.5, "max_tokens": 20,
                 "candidate_count": 2, "stop": ["\n\n"]})
    assert chat.status_code == 200, chat.text
    body = chat.json()
    schemas.Mlflow25ChatResponse.model_validate(body)
    assert len(body["candidates"]) == 2
    assert body["candidates"][0]["message"]["role"] == "assistant"
    assert body["candidates"][0]["metadata"]["finish_reason"] in ("stop", "length")
    meta = body["metadata"]
    assert meta["route_type"] == "llm/v1/chat" and meta["model"]
    assert meta["total_tokens"] == meta["input_tokens"] + meta["output_tokens"] > 0
    sent = fake_upstream.last_request
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.json["temperature"] == 1.0  # 2.5's 0..1 scale, times 2 for OpenAI
    assert sent.json["n"] == 2 and sent.json["max_tokens"] == 20 and sent.json["stop"] == ["\n\n"]

    comp = post(gateway_server, "oa-comp", caller.key, {"prompt": "Once upon"})
    assert comp.status_code == 200, comp.text
    schemas.Mlflow25CompletionsResponse.model_validate(comp.json())
    assert isinstance(comp.json()["candidates"][0]["text"], str)
    assert fake_upstream.last_request.json["prompt"] == "Once upon"

    emb = post(gateway_server, "oa-emb", caller.key, {"text": ["a", "b"]})
    assert emb.status_code == 200, emb.text
    schemas.Mlflow25EmbeddingsResponse.model_validate(emb.json())
    assert len(emb.json()["embeddings"]) == 2
    assert emb.json()["metadata"]["route_type"] == "llm/v1/embeddings"

    event = usage_for(chat)
    assert (event.status_code, event.route_name, event.provider, event.consumer_name, event.team_name) == (
        200, "oa-chat", "openai", "alice", "team-a")
    assert event.input_tokens == meta["input_tokens"] and event.output_tokens == meta["output_tokens"]
    caller.api_key.refresh_from_db()
    assert caller.api_key.last_used_at is not None


def test_mock_routes_answer_deterministically(gateway_server, make_route, make_caller) -> None:
    route = make_route(name="m-chat")
    caller = make_caller(routes=(route,))
    ready(gateway_server, caller.key, "m-chat")
    body = {"messages": [{"role": "user", "content": "Hello there"}]}
    first, second = (post(gateway_server, "m-chat", caller.key, body).json() for _ in range(2))
    assert first == second
    assert "Hello there" in first["candidates"][0]["message"]["content"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"messages": [{"role": "user", "content": "x"}], "temperature": 1.5}, "INVALID_PARAMETER_VALUE"),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "INVALID_PARAMETER_VALUE"),
        ({"messages": [{"role": "user", "content": "x"}], "candidate_count": 6}, "INVALID_PARAMETER_VALUE"),
        ({"messages": [{"role": "user", "content": "x"}], "candidate_count": 0}, "INVALID_PARAMETER_VALUE"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "INVALID_PARAMETER_VALUE"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": True}, "INVALID_PARAMETER_VALUE"),
        ({"messages": [{"role": "user", "content": "x"}], "stop": []}, "INVALID_PARAMETER_VALUE"),
        ({"messages": [{"role": "user", "content": "x"}], "stop": "x"}, "INVALID_PARAMETER_VALUE"),
        ({"messages": []}, "INVALID_PARAMETER_VALUE"),
        ({"messages": "hi"}, "INVALID_PARAMETER_VALUE"),
        ({"messages": [{"role": "user"}]}, "INVALID_PARAMETER_VALUE"),
        ({"messages": [{"role": "user", "content": "x"}], "unknown": 1}, "INVALID_PARAMETER_VALUE"),
        ({"text": "embed me"}, "ROUTE_TYPE_MISMATCH"),
        ({"prompt": "complete me"}, "ROUTE_TYPE_MISMATCH"),
        ({"messages": [{"role": "user", "content": "x"}], "openai_api_base": "http://evil"}, "FORBIDDEN_PARAMETER"),
        ({"messages": [{"role": "user", "content": "x"}], "base_url": "http://evil"}, "FORBIDDEN_PARAMETER"),
        ({"messages": [{"role": "user", "content": "x"}], "openai_config": {}}, "FORBIDDEN_PARAMETER"),
        ({"messages": [{"role": "user", "content": "x"}], "api_key": "sk-mine"}, "FORBIDDEN_PARAMETER"),
        ([1, 2], "MALFORMED_REQUEST"),
        (b"{nope", "MALFORMED_REQUEST"),
    ],
)
def test_bad_chat_bodies_are_400_and_recorded(gateway_server, make_route, make_caller, body, code) -> None:
    route = make_route(name="m-chat")
    caller = make_caller(routes=(route,))
    ready(gateway_server, caller.key, "m-chat")
    response = post(gateway_server, "m-chat", caller.key, body if not isinstance(body, list) else str(body))
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == code
    assert response.json()["message"]
    event = usage_for(response)
    assert (event.status_code, event.error_code) == (400, code)


def test_embeddings_and_completions_validation(gateway_server, make_route, make_caller) -> None:
    emb = make_route(name="m-emb", route_type="llm/v1/embeddings")
    comp = make_route(name="m-comp", route_type="llm/v1/completions")
    caller = make_caller(routes=(emb, comp))
    ready(gateway_server, caller.key, "m-emb", "m-comp")
    assert post(gateway_server, "m-emb", caller.key, {"text": "one"}).status_code == 200
    assert post(gateway_server, "m-emb", caller.key, {"text": []}).status_code == 400
    assert post(gateway_server, "m-emb", caller.key, {"text": 3}).status_code == 400
    mismatch = post(gateway_server, "m-emb", caller.key, {"messages": [{"role": "user", "content": "x"}]})
    assert mismatch.json()["error_code"] == "ROUTE_TYPE_MISMATCH"
    assert post(gateway_server, "m-comp", caller.key, {"prompt": 5}).status_code == 400
    assert post(gateway_server, "m-comp", caller.key, {"prompt": "x", "temperature": -0.1}).status_code == 400


def test_body_over_the_limit_is_413(gateway_server, make_route, make_caller) -> None:
    route = make_route(name="m-chat")
    caller = make_caller(routes=(route,))
    ready(gateway_server, caller.key, "m-chat")
    huge = {"messages": [{"role": "user", "content": "x" * 1_100_000}]}
    response = post(gateway_server, "m-chat", caller.key, huge)
    assert response.status_code == 413
    assert response.json()["error_code"] == "REQUEST_TOO_LARGE"
    assert usage_for(response).status_code == 413


def test_auth_and_access_errors(gateway_server, make_route, make_caller) -> None:
    from datetime import timedelta

    from django.utils import timezone

    granted = make_route(name="m-chat")
    other = make_route(name="m-other")
    disabled = make_route(name="m-off")
    caller = make_caller(routes=(granted, disabled))
    expired = make_caller(consumer="old", routes=(granted,), expires_at=timezone.now() + timedelta(seconds=1))
    ready(gateway_server, caller.key, "m-chat")
    body = {"messages": [{"role": "user", "content": "x"}]}

    assert post(gateway_server, "m-chat", None, body).json()["error_code"] == "UNAUTHENTICATED"
    assert post(gateway_server, "m-chat", "gw-bad_key", body).status_code == 401
    forbidden = post(gateway_server, "m-other", caller.key, body)
    assert (forbidden.status_code, forbidden.json()["error_code"]) == (403, "PERMISSION_DENIED")
    unknown = post(gateway_server, "nope", caller.key, body)
    assert (unknown.status_code, unknown.json()["error_code"]) == (404, "RESOURCE_DOES_NOT_EXIST")
    services.route_set_enabled(routes=[disabled], enabled=False)
    off = wait_for(lambda: (r := post(gateway_server, "m-off", caller.key, body)).status_code == 403 and r)
    assert off.json()["error_code"] == "ROUTE_DISABLED"
    assert usage_for(forbidden).error_code == "PERMISSION_DENIED"

    time.sleep(1.1)  # the key expires: refused at once, no reload needed
    assert post(gateway_server, "m-chat", expired.key, body).status_code == 401
    assert other.name == "m-other"


def test_revocation_reaches_the_server_within_two_seconds(gateway_server, make_route, make_caller) -> None:
    route = make_route(name="m-chat")
    caller = make_caller(routes=(route,))
    ready(gateway_server, caller.key, "m-chat")
    body = {"messages": [{"role": "user", "content": "x"}]}
    assert post(gateway_server, "m-chat", caller.key, body).status_code == 200
    services.api_key_revoke(api_keys=[caller.api_key])
    revoked_at = time.monotonic()
    wait_for(lambda: post(gateway_server, "m-chat", caller.key, body).status_code == 401, timeout=2.0)
    assert time.monotonic() - revoked_at < 2.0


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("sleep-5", 504, "UPSTREAM_TIMEOUT"),
        ("500", 502, "UPSTREAM_ERROR"),
        ("429-3", 502, "UPSTREAM_RATE_LIMITED"),
        ("garbage", 502, "UPSTREAM_BAD_RESPONSE"),
        ("incomplete", 502, "UPSTREAM_BAD_RESPONSE"),
        ("close", 502, "UPSTREAM_UNAVAILABLE"),
        ("close-mid", 502, "UPSTREAM_UNAVAILABLE"),
    ],
)
def test_upstream_faults_map_to_documented_errors(gateway_server, openai_routes, make_caller, fake_upstream,
                                                  fault, status, code) -> None:
    caller = make_caller(routes=(openai_routes["chat"],))
    ready(gateway_server, caller.key, "oa-chat")
    fake_upstream.reset()
    fake_upstream.add_fault(fault)
    response = post(gateway_server, "oa-chat", caller.key, {"messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == status, response.text
    assert response.json()["error_code"] == code
    assert KEY not in response.text and KEY[:8] not in response.text
    event = usage_for(response)
    assert (event.status_code, event.error_code, event.route_name) == (status, code, "oa-chat")
    # and the server keeps serving
    ok = post(gateway_server, "oa-chat", caller.key, {"messages": [{"role": "user", "content": "x"}]})
    assert ok.status_code == 200, ok.text


def test_upstream_rejecting_the_credential_never_leaks_it(gateway_server, make_route, make_caller,
                                                          fake_upstream) -> None:
    wrong = "sk-wrongKEY-4f8a9b7c6d5e4f3a2b1c"
    route = make_route(name="oa-bad", provider="openai", model_name="gpt-4o-mini",
                       config={"openai_api_key": wrong, "openai_api_base": fake_upstream.openai_base})
    caller = make_caller(routes=(route,))
    ready(gateway_server, caller.key, "oa-bad")
    response = post(gateway_server, "oa-bad", caller.key, {"messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 502
    assert response.json()["error_code"] == "UPSTREAM_AUTH_FAILED"
    for fragment in (wrong, wrong[:8], wrong[-4:]):
        assert fragment not in response.text
    usage_for(response)
    log = gateway_server.log()
    assert wrong not in log and wrong[:8] not in log and KEY not in log


def test_vendor_400_passes_its_message_as_400(gateway_server, openai_routes, make_caller, fake_upstream) -> None:
    caller = make_caller(routes=(openai_routes["chat"],))
    ready(gateway_server, caller.key, "oa-chat")
    fake_upstream.add_fault("400")
    response = post(gateway_server, "oa-chat", caller.key, {"messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 400
    assert response.json()["error_code"] == "UPSTREAM_BAD_REQUEST"


def test_health(gateway_server) -> None:
    assert httpx.get(f"{gateway_server.url}/health").json() == {"status": "OK"}

"""Anthropic and Cohere routes, against the fake upstream, through all three API families on the real
server: the same route answers the MLflow 2.5 route API, MLflow deployments and the openai SDK."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest
from django.test import Client

from routes.serving import schemas
from tests.e2e.test_serving_mlflow_routes import post, ready, usage_for
from tests.fake_upstream.server import FakeUpstream

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def vendor_routes(make_route, fake_upstream) -> dict[str, Any]:
    anthropic = {"anthropic_api_key": FakeUpstream.ANTHROPIC_KEY, "anthropic_api_base": fake_upstream.anthropic_base}
    cohere = {"cohere_api_key": FakeUpstream.COHERE_KEY, "cohere_api_base": fake_upstream.cohere_base}
    fake_upstream.reset()
    return {
        "a-chat": make_route(name="a-chat", provider="anthropic", model_name="claude-3-5-haiku-latest",
                             config=anthropic, max_retries=0),
        "a-comp": make_route(name="a-comp", route_type="llm/v1/completions", provider="anthropic",
                             model_name="claude-3-5-haiku-latest", config=anthropic),
        "co-chat": make_route(name="co-chat", provider="cohere", model_name="command-r", config=cohere,
                              max_retries=0),
        "co-comp": make_route(name="co-comp", route_type="llm/v1/completions", provider="cohere",
                              model_name="command-r", config=cohere),
        "co-emb": make_route(name="co-emb", route_type="llm/v1/embeddings", provider="cohere",
                             model_name="embed-english-v3.0", config=cohere),
    }


@pytest.fixture
def caller(vendor_routes, make_caller, gateway_server) -> Any:
    c = make_caller(routes=tuple(vendor_routes.values()))
    ready(gateway_server, c.key, *vendor_routes)
    return c


def deploy(server: Any, name: str, key: str, body: dict[str, Any]) -> httpx.Response:
    with server.client() as client:
        return client.post(f"/endpoints/{name}/invocations", json=body, headers={"Authorization": f"Bearer {key}"})


@pytest.mark.parametrize("route", ["a-chat", "co-chat"])
def test_chat_through_three_families(gateway_server, caller, fake_upstream, route) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    v25 = post(gateway_server, route, caller.key, {"messages": messages, "temperature": 0.5, "max_tokens": 40})
    assert v25.status_code == 200, v25.text
    body = schemas.Mlflow25ChatResponse.model_validate(v25.json())
    assert body.candidates[0].message.content and body.metadata.total_tokens
    sent = fake_upstream.last_request
    if route == "a-chat":
        assert sent.path == "/v1/messages" and sent.headers["x-api-key"] == FakeUpstream.ANTHROPIC_KEY
        assert sent.json["system"] == "Be brief." and sent.json["temperature"] == 0.5  # 2.5's 0.5, x1 for Anthropic
    else:
        assert sent.path == "/v2/chat" and sent.headers["authorization"] == f"Bearer {FakeUpstream.COHERE_KEY}"

    dep = deploy(gateway_server, route, caller.key, {"messages": messages, "max_tokens": 40})
    assert dep.status_code == 200, dep.text
    schemas.ChatCompletion.model_validate(dep.json())

    client = openai.OpenAI(base_url=f"{gateway_server.url}/v1", api_key=caller.key, max_retries=0)
    answer = client.chat.completions.create(model=route, messages=messages, max_tokens=40)  # type: ignore[arg-type]
    assert answer.choices[0].message.content and answer.usage and answer.usage.prompt_tokens > 0
    event = usage_for(v25)
    assert event.provider == ("anthropic" if route == "a-chat" else "cohere")


@pytest.mark.parametrize("route", ["a-comp", "co-comp"])
def test_completions_through_three_families(gateway_server, caller, route) -> None:
    assert post(gateway_server, route, caller.key, {"prompt": "Once"}).json()["candidates"][0]["text"]
    assert deploy(gateway_server, route, caller.key, {"prompt": "Once"}).json()["choices"][0]["text"]
    client = openai.OpenAI(base_url=f"{gateway_server.url}/v1", api_key=caller.key, max_retries=0)
    assert client.completions.create(model=route, prompt="Once").choices[0].text


def test_cohere_embeddings_through_three_families(gateway_server, caller) -> None:
    v25 = post(gateway_server, "co-emb", caller.key, {"text": ["a", "b"]})
    assert len(schemas.Mlflow25EmbeddingsResponse.model_validate(v25.json()).embeddings) == 2
    assert len(deploy(gateway_server, "co-emb", caller.key, {"input": ["a", "b"]}).json()["data"]) == 2
    client = openai.OpenAI(base_url=f"{gateway_server.url}/v1", api_key=caller.key, max_retries=0)
    assert len(client.embeddings.create(model="co-emb", input=["x"]).data) == 1


@pytest.mark.parametrize("route", ["a-chat", "co-chat"])
def test_vendor_faults_and_refusals(gateway_server, caller, fake_upstream, route) -> None:
    messages = [{"role": "user", "content": "x"}]
    fake_upstream.add_fault("500")
    failed = post(gateway_server, route, caller.key, {"messages": messages})
    assert (failed.status_code, failed.json()["error_code"]) == (502, "UPSTREAM_ERROR")
    fake_upstream.add_fault("429-2")
    limited = deploy(gateway_server, route, caller.key, {"messages": messages})
    assert (limited.status_code, limited.json()["error_code"]) == (502, "UPSTREAM_RATE_LIMITED")
    client = openai.OpenAI(base_url=f"{gateway_server.url}/v1", api_key=caller.key, max_retries=0)
    with pytest.raises(openai.BadRequestError):  # one candidate only at these vendors
        client.chat.completions.create(model=route, messages=messages, n=2)  # type: ignore[arg-type]
    for key in (FakeUpstream.ANTHROPIC_KEY, FakeUpstream.COHERE_KEY):
        assert key[:10] not in failed.text + limited.text


def test_anthropic_embeddings_route_is_refused_at_creation(client: Client, make_caller) -> None:
    admin = make_caller(consumer="root", is_admin=True)
    response = client.post(
        "/api/2.0/gateway/routes/", content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {admin.key}",
        data={"name": "a-emb", "route_type": "llm/v1/embeddings",
              "model": {"name": "claude", "provider": "anthropic", "config": {"anthropic_api_key": "sk-ant-x"}}},
    )
    assert response.status_code == 400
    assert "does not support route type 'llm/v1/embeddings'" in response.json()["message"]

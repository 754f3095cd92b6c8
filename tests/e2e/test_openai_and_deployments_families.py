"""The OpenAI-compatible API with the official openai SDK (sync and async), and the MLflow
deployments API, on the real server and the same routes as the MLflow 2.5 route API."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from routes import services
from routes.serving import schemas
from tests.e2e.test_serving_mlflow_routes import KEY, post, ready, usage_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def family_routes(make_route, fake_upstream) -> dict[str, Any]:
    oa = {"openai_api_key": KEY, "openai_api_base": fake_upstream.openai_base}
    return {
        "chat": make_route(name="f-chat", route_type="llm/v1/chat", max_candidates=3),
        "completions": make_route(name="f-comp", route_type="llm/v1/completions"),
        "embeddings": make_route(name="f-emb", route_type="llm/v1/embeddings"),
        "oa-chat": make_route(name="f-oa-chat", route_type="llm/v1/chat", provider="openai",
                              model_name="gpt-4o-mini", config=oa),
        "hidden": make_route(name="f-hidden", route_type="llm/v1/chat"),
    }


@pytest.fixture
def caller(family_routes, make_caller, gateway_server) -> Any:
    granted = tuple(r for k, r in family_routes.items() if k != "hidden")
    c = make_caller(routes=granted)
    ready(gateway_server, c.key, *(r.name for r in granted))
    return c


def sdk(server: Any, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


def test_openai_sdk_chat_completions_embeddings(gateway_server, caller, fake_upstream) -> None:
    client = sdk(gateway_server, caller.key)
    chat = client.chat.completions.create(
        model="f-chat", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi!"}],
        temperature=0.7, max_tokens=30, n=2,
    )
    assert chat.model == "f-chat" and len(chat.choices) == 2
    assert "Hi" in (chat.choices[0].message.content or "")
    assert chat.usage is not None and chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens

    comp = client.completions.create(model="f-comp", prompt="Once upon a time", max_tokens=5)
    assert comp.choices[0].finish_reason == "length" and comp.choices[0].text

    emb = client.embeddings.create(model="f-emb", input=["a", "b", "c"])
    assert [d.index for d in emb.data] == [0, 1, 2] and len(emb.data[0].embedding) == 16

    fake_upstream.reset()
    upstream = client.chat.completions.create(model="f-oa-chat", messages=[{"role": "user", "content": "x"}],
                                              temperature=1.5, top_p=0.9, stop=["END"])
    assert upstream.choices[0].message.role == "assistant"
    sent = fake_upstream.last_request.json
    assert (sent["temperature"], sent["top_p"], sent["stop"], sent["model"]) == (1.5, 0.9, ["END"], "gpt-4o-mini")


async def test_openai_async_sdk(gateway_server, caller) -> None:
    client = openai.AsyncOpenAI(base_url=f"{gateway_server.url}/v1", api_key=caller.key, max_retries=0)
    chat = await client.chat.completions.create(model="f-chat", messages=[{"role": "user", "content": "async"}])
    assert "async" in (chat.choices[0].message.content or "")
    with pytest.raises(openai.NotFoundError):
        await client.embeddings.create(model="nope", input="x")
    await client.close()


def test_openai_sdk_error_classes(gateway_server, caller, family_routes) -> None:
    messages = [{"role": "user", "content": "x"}]
    with pytest.raises(openai.AuthenticationError) as auth:
        sdk(gateway_server, "gw-wrong_key").chat.completions.create(model="f-chat", messages=messages)
    assert auth.value.status_code == 401
    client = sdk(gateway_server, caller.key)
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="f-hidden", messages=messages)
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such-route", messages=messages)
    assert missing.value.body["code"] == "resource_does_not_exist"  # type: ignore[index]
    for bad in (
        {"temperature": 2.5},
        {"n": 4},  # above the route's cap of 3
        {"top_p": 1.5},
        {"presence_penalty": -3},
        {"stream_options": {"include_usage": True}},  # only with stream: true
        {"extra_body": {"api_base": "http://evil"}},
        {"extra_body": {"logit_bias_unknown": 1}},
    ):
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="f-chat", messages=messages, **bad)  # type: ignore[call-overload]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="f-chat", messages=[])
    with pytest.raises(openai.BadRequestError) as mismatch:
        client.embeddings.create(model="f-chat", input="x")  # an embeddings body on a chat route
    assert mismatch.value.body["code"] == "route_type_mismatch"  # type: ignore[index]


def test_models_lists_only_granted_enabled_routes(gateway_server, caller, family_routes) -> None:
    client = sdk(gateway_server, caller.key)
    names = sorted(m.id for m in client.models.list())
    assert names == ["f-chat", "f-comp", "f-emb", "f-oa-chat"]
    assert client.models.retrieve("f-chat").owned_by == "mock"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("f-hidden")
    services.route_set_enabled(routes=[family_routes["embeddings"]], enabled=False)
    from tests.e2e.test_serving_mlflow_routes import wait_for

    wait_for(lambda: "f-emb" not in [m.id for m in client.models.list()])


def test_usage_is_recorded_for_the_openai_family(gateway_server, caller) -> None:
    with httpx.Client(base_url=gateway_server.url) as client:
        response = client.post("/v1/chat/completions", headers=caller.headers,
                               json={"model": "f-chat", "messages": [{"role": "user", "content": "count me"}]})
    assert response.status_code == 200
    event = usage_for(response)
    assert (event.api_family, event.route_name, event.status_code) == ("openai", "f-chat", 200)
    assert event.input_tokens == response.json()["usage"]["prompt_tokens"]


def deploy(server: Any, name: str, key: str | None, body: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with server.client() as client:
        return client.post(f"/endpoints/{name}/invocations", json=body, headers=headers)


def test_deployments_api_for_three_route_types(gateway_server, caller) -> None:
    chat = deploy(gateway_server, "f-chat", caller.key,
                  {"messages": [{"role": "user", "content": "Hello"}], "temperature": 1.2, "n": 2, "max_tokens": 50})
    assert chat.status_code == 200, chat.text
    body = chat.json()
    schemas.ChatCompletion.model_validate(body)  # what the OpenAPI document promises
    assert body["object"] == "chat.completion" and len(body["choices"]) == 2
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    comp = deploy(gateway_server, "f-comp", caller.key, {"prompt": "Hello", "stop": "x"})
    assert schemas.Completion.model_validate(comp.json()).choices[0].text
    emb = deploy(gateway_server, "f-emb", caller.key, {"input": "Hello"})
    assert schemas.EmbeddingList.model_validate(emb.json()).data[0].embedding
    bad = deploy(gateway_server, "f-emb", caller.key, {"input": 1})
    schemas.MlflowError.model_validate(bad.json())
    assert usage_for(emb).api_family == "deployments"


@pytest.mark.parametrize(
    ("name", "body", "status", "code"),
    [
        ("f-chat", {"messages": [{"role": "user", "content": "x"}], "temperature": 3}, 400, "INVALID_PARAMETER_VALUE"),
        ("f-chat", {"messages": [{"role": "user", "content": "x"}], "n": 9}, 400, "INVALID_PARAMETER_VALUE"),
        ("f-emb", {"input": "x", "stream": True}, 400, "INVALID_PARAMETER_VALUE"),
        ("f-chat", {"messages": [{"role": "user", "content": "x"}], "stop": ["a"] * 5}, 400,
         "INVALID_PARAMETER_VALUE"),
        ("f-chat", {"messages": [{"role": "robot", "content": "x"}]}, 400, "INVALID_PARAMETER_VALUE"),
        ("f-chat", {"input": "x"}, 400, "ROUTE_TYPE_MISMATCH"),
        ("f-emb", {"input": []}, 400, "INVALID_PARAMETER_VALUE"),
        ("f-emb", {"input": [""]}, 400, "INVALID_PARAMETER_VALUE"),
        ("f-comp", {"prompt": ["a", "b"]}, 400, "INVALID_PARAMETER_VALUE"),
        ("f-hidden", {"messages": [{"role": "user", "content": "x"}]}, 403, "PERMISSION_DENIED"),
        ("nope", {"messages": [{"role": "user", "content": "x"}]}, 404, "RESOURCE_DOES_NOT_EXIST"),
    ],
)
def test_deployments_bad_input(gateway_server, caller, name, body, status, code) -> None:
    response = deploy(gateway_server, name, caller.key, body)
    assert response.status_code == status, response.text
    assert schemas.MlflowError.model_validate(response.json()).error_code == code


def test_deployments_listing_shows_only_granted_routes_with_limit_key(gateway_server, caller) -> None:
    with gateway_server.client() as client:
        page = client.get("/api/2.0/endpoints/", headers=caller.headers).json()
        names = [e["name"] for e in page["endpoints"]]
        assert names == ["f-chat", "f-comp", "f-emb", "f-oa-chat"]
        one = client.get("/api/2.0/endpoints/f-chat", headers=caller.headers).json()
        assert one == {"name": "f-chat", "endpoint_type": "llm/v1/chat",
                       "model": {"name": "mock-1", "provider": "mock"},
                       "endpoint_url": f"{gateway_server.url}/endpoints/f-chat/invocations", "limit": None}
        assert client.get("/api/2.0/endpoints/f-hidden", headers=caller.headers).status_code == 404


def test_unknown_serving_paths_answer_json(gateway_server, caller) -> None:
    with gateway_server.client() as client:
        v1 = client.get("/v1/nothing", headers=caller.headers)
        assert v1.status_code == 404
        assert schemas.OpenAIError.model_validate(v1.json()).error.code == "endpoint_not_found"
        wrong_method = client.get("/gateway/f-chat/invocations")
        assert wrong_method.status_code == 405 and wrong_method.json()["error_code"] == "METHOD_NOT_ALLOWED"
    ok = post(gateway_server, "f-chat", caller.key, {"messages": [{"role": "user", "content": "x"}]})
    assert ok.status_code == 200

"""MLflow's own 2.x gateway client (mlflow-skinny 2.22.5, in its own venv) and our gateway_client,
unchanged, against the real running server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.clients.venvs import SCRIPTS_DIR, ClientVenv, client_venv, run_script
from tests.gateway_server import GatewayServer, start_gateway_server

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def paging_server(django_db_setup: None, django_db_blocker: Any) -> Iterator[GatewayServer]:
    """A server with a page size of 2, so listings need several pages."""
    with django_db_blocker.unblock():
        server = start_gateway_server({"GATEWAY_PAGE_SIZE": "2"})
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mlflow2_venv() -> ClientVenv:
    return client_venv("mlflow2", ("mlflow-skinny==2.22.5",))


@pytest.fixture(scope="session")
def mlflow3_venv() -> ClientVenv:
    return client_venv("mlflow3", ("mlflow-skinny>=3,<4",))


def seeded(make_route, make_caller) -> tuple[Any, Any]:
    routes = [
        make_route(name="c-chat", route_type="llm/v1/chat"),
        make_route(name="c-completions", route_type="llm/v1/completions"),
        make_route(name="c-embeddings", route_type="llm/v1/embeddings"),
        make_route(name="c-extra", route_type="llm/v1/chat"),
    ]
    consumer = make_caller(routes=tuple(routes))
    admin = make_caller(consumer="platform", is_admin=True)
    return consumer, admin


@pytest.mark.clients
def test_mlflow_2x_gateway_client_passes_unchanged(paging_server, mlflow2_venv, make_route, make_caller) -> None:
    from tests.e2e.test_serving_mlflow_routes import ready

    consumer, admin = seeded(make_route, make_caller)
    ready(paging_server, consumer.key, "c-chat", "c-completions", "c-embeddings", "c-extra")
    ready(paging_server, admin.key, "c-chat")
    result = run_script(
        mlflow2_venv,
        SCRIPTS_DIR / "mlflow2_gateway_client.py",
        env={
            "MLFLOW_GATEWAY_URI": paging_server.url,
            "MLFLOW_TRACKING_TOKEN": consumer.key,
            "GW_CHAT_ROUTE": "c-chat",
            "GW_COMPLETIONS_ROUTE": "c-completions",
            "GW_EMBEDDINGS_ROUTE": "c-embeddings",
            "GW_EXPECT_ROUTES": "c-chat,c-completions,c-embeddings,c-extra",
            "GW_MIN_PAGES": "2",
            "GW_ADMIN_TOKEN": admin.key,
            "GW_STEPS": "get_route,search_routes,query_chat,query_completions,query_embeddings,bad_token,"
                        "unknown_route,create_delete,limits",
        },
        timeout=180,
    )
    report = result.json()
    assert report["ok"], (report.get("errors"), result.stderr[-2000:])
    results = report["results"]
    assert results["search_routes"]["pages"] >= 2
    assert set(results) >= {"get_route", "search_routes", "query_chat", "query_completions", "query_embeddings",
                            "bad_token", "unknown_route", "create_delete", "limits"}
    assert results["limits"]["route_limit"] == {"calls": 50, "renewal_period": "minute", "key": "user"}


@pytest.mark.clients
def test_mlflow_3x_deployments_client_passes_unchanged(paging_server, mlflow3_venv, make_route, make_caller) -> None:
    from tests.e2e.test_serving_mlflow_routes import ready

    consumer, _ = seeded(make_route, make_caller)
    ready(paging_server, consumer.key, "c-chat", "c-completions", "c-embeddings", "c-extra")
    result = run_script(
        mlflow3_venv,
        SCRIPTS_DIR / "mlflow3_deployments_client.py",
        env={
            "GW_URL": paging_server.url,
            "MLFLOW_TRACKING_TOKEN": consumer.key,
            "GW_CHAT_ENDPOINT": "c-chat",
            "GW_COMPLETIONS_ENDPOINT": "c-completions",
            "GW_EMBEDDINGS_ENDPOINT": "c-embeddings",
            "GW_EXPECT_ENDPOINTS": "c-chat,c-completions,c-embeddings,c-extra",
            "GW_MIN_PAGES": "2",
        },
        timeout=180,
    )
    report = result.json()
    assert result.returncode == 0 and report["ok"], (report.get("errors"), result.stderr[-2000:])
    assert report["results"]["list_endpoints"]["public_pages"] >= 2


def test_gateway_client_runs_the_seed_snippet(paging_server, make_route, make_caller, monkeypatch,
                                              fake_upstream) -> None:
    import gateway_client
    from tests.e2e.test_serving_mlflow_routes import ready

    consumer, admin = seeded(make_route, make_caller)
    ready(paging_server, admin.key, "c-chat")
    monkeypatch.setenv("GATEWAY_API_KEY", admin.key)
    # The seed's snippet, with only the import changed (and our URL instead of "databricks").
    gateway_client.set_gateway_uri(paging_server.url)
    gateway_client.create_route(
        name="product-review-gpt4",
        route_type="llm/v1/completions",
        data={
            "name": "gpt-4",
            "provider": "openai",
            "openai_config": {
                "openai_api_key": "sk-fake9Qm4Xr7Lp2Vt8Wz6Kd3N",
                "openai_api_base": fake_upstream.openai_base,
            },
        },
    )
    ready(paging_server, admin.key, "product-review-gpt4")
    response = gateway_client.query(
        route="product-review-gpt4",
        data={"prompt": "Classify the following product review as positive or negative: 'Great value!'"},
    )
    assert response["candidates"][0]["text"]
    assert response["metadata"]["route_type"] == "llm/v1/completions"

    route = gateway_client.get_route("product-review-gpt4")
    assert route.model.provider == "openai"
    names = [r.name for r in gateway_client.list_routes()]
    assert "product-review-gpt4" in names and "c-extra" in names

    monkeypatch.setenv("GATEWAY_API_KEY", consumer.key)
    with pytest.raises(gateway_client.PermissionDeniedError) as denied:
        gateway_client.delete_route("product-review-gpt4")
    assert denied.value.error_code == "PERMISSION_DENIED"
    with pytest.raises(gateway_client.NotFoundError):
        gateway_client.query(route="nope", data={"prompt": "x"})
    monkeypatch.setenv("GATEWAY_API_KEY", admin.key)
    gateway_client.delete_route("product-review-gpt4")
    with pytest.raises(gateway_client.NotFoundError):
        gateway_client.get_route("product-review-gpt4")

"""gateway_client against a real HTTP server (stdlib, in a thread): URLs, headers, bodies, errors."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import gateway_client
from gateway_client import client as client_mod


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    raw: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class FakeGateway:
    """Answers scripted replies keyed by (METHOD, path) (path without query), records requests."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.replies: dict[tuple[str, str], list[Reply]] = {}
        self.default = Reply(404, {"error_code": "ENDPOINT_NOT_FOUND", "message": "no such path"})
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                outer.requests.append(
                    Recorded(
                        method=self.command,
                        path=parts.path,
                        query=parse_qs(parts.query),
                        headers={k.lower(): v for k, v in self.headers.items()},
                        body=json.loads(raw) if raw else None,
                    )
                )
                queue = outer.replies.get((self.command, parts.path))
                reply = (queue.pop(0) if len(queue) > 1 else queue[0]) if queue else outer.default
                if reply.delay:
                    threading.Event().wait(reply.delay)
                data = reply.raw if reply.raw is not None else b""
                if reply.raw is None and reply.body is not None:
                    data = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                if reply.raw is None and reply.body is not None:
                    self.send_header("Content-Type", "application/json")
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PUT = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def on(self, method: str, path: str, *replies: Reply) -> None:
        self.replies[(method, path)] = list(replies)

    @property
    def last(self) -> Recorded:
        return self.requests[-1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


ENV_VARS = (
    "GATEWAY_URI",
    "MLFLOW_GATEWAY_URI",
    "GATEWAY_API_KEY",
    "MLFLOW_TRACKING_TOKEN",
    "DATABRICKS_HOST",
    "DATABRICKS_TOKEN",
)


@pytest.fixture(autouse=True)
def clean_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(client_mod, "_gateway_uri", None)
    monkeypatch.setattr(client_mod, "_clients", {})
    yield
    for c in client_mod._clients.values():
        c.close()


@pytest.fixture
def gw(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGateway]:
    server = FakeGateway()
    monkeypatch.setenv("GATEWAY_API_KEY", "gw-abc_secret")
    gateway_client.set_gateway_uri(server.url)
    yield server
    server.close()


def route_json(name: str, route_type: str = "llm/v1/chat", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "route_type": route_type,
        "model": {"name": "gpt-4o-mini", "provider": "openai"},
        "route_url": f"/gateway/{name}/invocations",
        "limit": None,
        **extra,
    }


# -- URI and key resolution --------------------------------------------------------------------


def test_gateway_uri_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(gateway_client.GatewayConfigError):
        gateway_client.get_gateway_uri()
    monkeypatch.setenv("MLFLOW_GATEWAY_URI", "http://mlflow-env:1")
    assert gateway_client.get_gateway_uri() == "http://mlflow-env:1"
    monkeypatch.setenv("GATEWAY_URI", "http://gw-env:2")
    assert gateway_client.get_gateway_uri() == "http://gw-env:2"
    gateway_client.set_gateway_uri("https://set.example:3/prefix")
    assert gateway_client.get_gateway_uri() == "https://set.example:3/prefix"


@pytest.mark.parametrize("bad", ["", "localhost:8000", "/api", "ftp://x", "http://"])
def test_set_gateway_uri_rejects_malformed(bad: str) -> None:
    with pytest.raises(gateway_client.GatewayConfigError) as info:
        gateway_client.set_gateway_uri(bad)
    assert isinstance(info.value, ValueError)
    assert info.value.status is None


def test_key_precedence_and_bearer_header(gw: FakeGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    gw.on("GET", "/api/2.0/gateway/routes/r1", Reply(200, route_json("r1")))
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "mlflow-token")
    gateway_client.get_route("r1")
    assert gw.last.headers["authorization"] == "Bearer gw-abc_secret"

    monkeypatch.delenv("GATEWAY_API_KEY")
    gateway_client.get_route("r1")  # the key is re-read on every call
    assert gw.last.headers["authorization"] == "Bearer mlflow-token"

    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN")
    gateway_client.get_route("r1")
    assert "authorization" not in gw.last.headers

    with gateway_client.GatewayClient(gw.url, api_key="explicit") as c:
        c.get_route("r1")
    assert gw.last.headers["authorization"] == "Bearer explicit"
    assert gw.last.headers["accept"] == "application/json"
    assert gw.last.headers["user-agent"].startswith("llm-governance-gateway-client/")


def test_base_url_with_path_prefix_and_trailing_slash(gw: FakeGateway) -> None:
    gw.on("GET", "/prefix/api/2.0/gateway/routes/r1", Reply(200, route_json("r1")))
    gateway_client.set_gateway_uri(gw.url + "/prefix/")
    assert gateway_client.get_route("r1").name == "r1"
    assert gw.last.path == "/prefix/api/2.0/gateway/routes/r1"


def test_databricks_uri_uses_databricks_host_and_token(monkeypatch: pytest.MonkeyPatch) -> None:
    server = FakeGateway()
    try:
        server.on("GET", "/api/2.0/gateway/routes/r1", Reply(200, route_json("r1")))
        gateway_client.set_gateway_uri("databricks")  # the seed's snippet
        with pytest.raises(gateway_client.GatewayConfigError):
            gateway_client.get_route("r1")
        monkeypatch.setenv("DATABRICKS_HOST", server.url)
        monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-token")
        gateway_client.get_route("r1")
        assert server.last.headers["authorization"] == "Bearer dapi-token"
        monkeypatch.setenv("GATEWAY_API_KEY", "gw-key")
        gateway_client.get_route("r1")
        assert server.last.headers["authorization"] == "Bearer gw-key"
    finally:
        server.close()


# -- routes --------------------------------------------------------------------------------------


def test_get_route_parses_route(gw: FakeGateway) -> None:
    body = route_json(
        "chat-a",
        limit={"calls": 10, "renewal_period": "minute", "key": "user"},
        something_new={"x": 1},
    )
    gw.on("GET", "/api/2.0/gateway/routes/chat-a", Reply(200, body))
    route = gateway_client.get_route("chat-a")
    assert gw.last.method == "GET"
    assert gw.last.body is None
    assert route.name == "chat-a"
    assert route.route_type == "llm/v1/chat"
    assert route.model.name == "gpt-4o-mini"
    assert route.model.provider == "openai"
    assert route.route_url == "/gateway/chat-a/invocations"
    assert route.limit is not None
    assert (route.limit.calls, route.limit.renewal_period, route.limit.key) == (10, "minute", "user")
    assert route.to_dict() == body  # server extras kept


def test_route_name_is_url_encoded(gw: FakeGateway) -> None:
    gw.on("GET", "/api/2.0/gateway/routes/a%20b%2Fc", Reply(200, route_json("a b/c")))
    assert gateway_client.get_route("a b/c").name == "a b/c"
    with pytest.raises(gateway_client.GatewayConfigError):
        gateway_client.get_route("")


def test_search_routes_one_page_and_list_routes_all_pages(gw: FakeGateway) -> None:
    pages = {
        None: {"routes": [route_json("a"), route_json("b")], "next_page_token": "t1"},
        "t1": {"routes": [route_json("c"), route_json("d")], "next_page_token": "t2"},
        "t2": {"routes": [route_json("e")], "next_page_token": None},
    }
    gw.on("GET", "/api/2.0/gateway/routes/", *[Reply(200, p) for p in pages.values()])
    first = gateway_client.search_routes()
    assert [r.name for r in first] == ["a", "b"]
    assert first.token == first.next_page_token == "t1"
    assert gw.last.query == {}  # no page_token on the first page
    second = gateway_client.search_routes(page_token="t1")
    assert gw.last.query == {"page_token": ["t1"]}
    assert [r.name for r in second] == ["c", "d"]

    gw.on("GET", "/api/2.0/gateway/routes/", *[Reply(200, p) for p in pages.values()])
    gw.requests.clear()
    assert [r.name for r in gateway_client.list_routes()] == ["a", "b", "c", "d", "e"]
    assert [r.query.get("page_token") for r in gw.requests] == [None, ["t1"], ["t2"]]


@pytest.mark.parametrize("end", [None, "", "absent"])
def test_search_routes_end_of_pages(gw: FakeGateway, end: str | None) -> None:
    body: dict[str, Any] = {"routes": [route_json("a")]}
    if end != "absent":
        body["next_page_token"] = end
    gw.on("GET", "/api/2.0/gateway/routes/", Reply(200, body))
    page = gateway_client.search_routes()
    assert page.token is None
    assert len(gateway_client.list_routes()) == 1


def test_seed_snippet_runs_with_only_the_import_changed(gw: FakeGateway) -> None:
    created = route_json("product-review-gpt4", "llm/v1/completions")
    created["model"] = {"name": "gpt-4", "provider": "openai"}
    gw.on("POST", "/api/2.0/gateway/routes/", Reply(201, created))
    answer = {
        "candidates": [{"text": "Great product.", "metadata": {"finish_reason": "stop"}}],
        "metadata": {
            "input_tokens": 5,
            "output_tokens": 3,
            "total_tokens": 8,
            "model": "gpt-4",
            "route_type": "llm/v1/completions",
        },
    }
    gw.on("POST", "/gateway/product-review-gpt4/invocations", Reply(200, answer))

    from gateway_client import create_route, query, set_gateway_uri

    set_gateway_uri(gw.url)
    route = create_route(
        name="product-review-gpt4",
        route_type="llm/v1/completions",
        data={"name": "gpt-4", "provider": "openai", "openai_config": {"openai_api_key": "sk-x"}},
    )
    create_req = gw.requests[-1]
    response = query(route="product-review-gpt4", data={"prompt": "Review: it works"})

    assert create_req.method == "POST"
    assert create_req.path == "/api/2.0/gateway/routes/"
    assert create_req.headers["content-type"] == "application/json"
    assert create_req.body == {
        "name": "product-review-gpt4",
        "route_type": "llm/v1/completions",
        "data": {"name": "gpt-4", "provider": "openai", "openai_config": {"openai_api_key": "sk-x"}},
    }
    assert route.name == "product-review-gpt4"
    assert route.model.name == "gpt-4"
    assert gw.last.path == "/gateway/product-review-gpt4/invocations"
    assert gw.last.body == {"prompt": "Review: it works"}
    assert response == answer


def test_create_route_mlflow_model_shape(gw: FakeGateway) -> None:
    gw.on("POST", "/api/2.0/gateway/routes/", Reply(200, route_json("c1")))
    model = {"name": "gpt-4o-mini", "provider": "openai", "config": {"openai_api_key": "sk"}}
    with gateway_client.GatewayClient() as c:
        c.create_route("c1", "llm/v1/chat", model=model)
    assert gw.last.body == {"name": "c1", "route_type": "llm/v1/chat", "model": model}


def test_create_route_argument_errors(gw: FakeGateway) -> None:
    with pytest.raises(gateway_client.GatewayConfigError):
        gateway_client.create_route("x", "llm/v1/chat")
    with pytest.raises(gateway_client.GatewayConfigError):
        gateway_client.create_route("x", "llm/v1/chat", data={"provider": "openai"}, model={"provider": "a"})
    with pytest.raises(gateway_client.GatewayConfigError):
        gateway_client.create_route("x", data={"provider": "openai"})
    assert gw.requests == []


@pytest.mark.parametrize("reply", [Reply(204), Reply(200, {})])
def test_delete_route(gw: FakeGateway, reply: Reply) -> None:
    gw.on("DELETE", "/api/2.0/gateway/routes/old", reply)
    assert gateway_client.delete_route("old") is None
    assert (gw.last.method, gw.last.path, gw.last.body) == ("DELETE", "/api/2.0/gateway/routes/old", None)


# -- query -----------------------------------------------------------------------------------------


def test_query_chat_and_embeddings(gw: FakeGateway) -> None:
    chat = {
        "candidates": [{"message": {"role": "assistant", "content": "hi"}, "metadata": {}}],
        "metadata": {"route_type": "llm/v1/chat"},
    }
    emb = {"embeddings": [[0.1, 0.2]], "metadata": {"route_type": "llm/v1/embeddings"}}
    gw.on("POST", "/gateway/chat/invocations", Reply(200, chat))
    gw.on("POST", "/gateway/emb/invocations", Reply(200, emb))
    data = {"messages": [{"role": "user", "content": "hello"}], "temperature": 0.3, "max_tokens": 5}
    assert gateway_client.query("chat", data) == chat
    assert gw.last.body == data
    assert gw.last.headers["authorization"] == "Bearer gw-abc_secret"
    with gateway_client.GatewayClient() as c:
        route = gateway_client.Route.from_dict(route_json("emb", "llm/v1/embeddings"))
        assert c.query(route, {"text": ["a"]}) == emb
    assert gw.last.body == {"text": ["a"]}


def test_query_non_json_success_is_an_error(gw: FakeGateway) -> None:
    gw.on("POST", "/gateway/chat/invocations", Reply(200, raw=b"<html>proxy</html>"))
    with pytest.raises(gateway_client.GatewayClientError) as info:
        gateway_client.query("chat", {"prompt": "x"})
    assert info.value.error_code == "INVALID_RESPONSE"


# -- limits ----------------------------------------------------------------------------------------


def test_set_and_get_limits(gw: FakeGateway) -> None:
    limits = [{"calls": 50, "renewal_period": "minute", "key": "user"}]
    gw.on("POST", "/api/2.0/gateway/limits/", Reply(200, {"limits": limits}))
    gw.on("GET", "/api/2.0/gateway/limits/chat", Reply(200, {"limits": limits}))
    result = gateway_client.set_limits("chat", limits)
    assert gw.last.body == {"route": "chat", "limits": limits}
    assert result.route == "chat"
    assert [(x.calls, x.renewal_period, x.key) for x in result.limits] == [(50, "minute", "user")]
    got = gateway_client.get_limits("chat")
    assert gw.last.method == "GET"
    assert got.limits[0].calls == 50


# -- errors ----------------------------------------------------------------------------------------

E = gateway_client


@pytest.mark.parametrize(
    ("status", "cls", "code"),
    [
        (400, E.BadRequestError, "INVALID_PARAMETER_VALUE"),
        (401, E.AuthenticationError, "UNAUTHENTICATED"),
        (403, E.PermissionDeniedError, "PERMISSION_DENIED"),
        (404, E.NotFoundError, "RESOURCE_DOES_NOT_EXIST"),
        (409, E.ConflictError, "RESOURCE_ALREADY_EXISTS"),
        (413, E.PayloadTooLargeError, "REQUEST_TOO_LARGE"),
        (429, E.RateLimitError, "REQUEST_LIMIT_EXCEEDED"),
        (500, E.UpstreamError, "INTERNAL_ERROR"),
        (502, E.UpstreamError, "UPSTREAM_ERROR"),
        (503, E.UpstreamError, "TEMPORARILY_UNAVAILABLE"),
        (504, E.UpstreamError, "DEADLINE_EXCEEDED"),
        (418, E.GatewayClientError, "TEAPOT"),
    ],
)
def test_error_mapping_mlflow_shape(gw: FakeGateway, status: int, cls: type, code: str) -> None:
    gw.on(
        "POST",
        "/gateway/r/invocations",
        Reply(status, {"error_code": code, "message": f"boom {status}"}, headers={"Retry-After": "7"}),
    )
    with pytest.raises(gateway_client.GatewayClientError) as info:
        gateway_client.query("r", {"prompt": "x"})
    err = info.value
    assert type(err) is cls
    assert (err.status, err.error_code, err.message) == (status, code, f"boom {status}")
    assert err.body == {"error_code": code, "message": f"boom {status}"}
    assert err.method == "POST"
    assert err.url == gw.url + "/gateway/r/invocations"
    assert str(status) in str(err) and code in str(err)
    if status == 429:
        assert isinstance(err, gateway_client.RateLimitError)
        assert err.retry_after == 7.0


def test_error_mapping_other_body_shapes(gw: FakeGateway) -> None:
    path = "/api/2.0/gateway/routes/x"
    gw.on("GET", path, Reply(403, {"error": {"message": "not granted", "type": "permission", "code": "no"}}))
    with pytest.raises(gateway_client.PermissionDeniedError) as info:
        gateway_client.get_route("x")
    assert (info.value.error_code, info.value.message) == ("no", "not granted")

    gw.on("GET", path, Reply(401, {"detail": "Authentication credentials were not provided."}))
    with pytest.raises(gateway_client.AuthenticationError) as info2:
        gateway_client.get_route("x")
    assert info2.value.error_code is None
    assert info2.value.message == "Authentication credentials were not provided."

    gw.on("GET", path, Reply(502, raw=b"Bad Gateway from proxy", headers={"Content-Type": "text/plain"}))
    with pytest.raises(gateway_client.UpstreamError) as info3:
        gateway_client.get_route("x")
    assert info3.value.message == "Bad Gateway from proxy"
    assert info3.value.body == "Bad Gateway from proxy"

    gw.on("GET", path, Reply(500))
    with pytest.raises(gateway_client.UpstreamError) as info4:
        gateway_client.get_route("x")
    assert info4.value.message == "Internal Server Error"


def test_redirects_are_not_followed(gw: FakeGateway) -> None:
    gw.on("GET", "/api/2.0/gateway/routes/x", Reply(301, headers={"Location": "/api/2.0/gateway/routes/x/"}))
    with pytest.raises(gateway_client.GatewayClientError) as info:
        gateway_client.get_route("x")
    assert info.value.status == 301
    assert len(gw.requests) == 1


def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with (
        gateway_client.GatewayClient(f"http://127.0.0.1:{port}") as c,
        pytest.raises(gateway_client.GatewayConnectionError) as info,
    ):
        c.get_route("x")
    assert info.value.status is None


def test_timeout(gw: FakeGateway) -> None:
    gw.on("POST", "/gateway/slow/invocations", Reply(200, {}, delay=1.0))
    with (
        gateway_client.GatewayClient(timeout=0.2) as c,
        pytest.raises(gateway_client.GatewayTimeoutError) as info,
    ):
        c.query("slow", {"prompt": "x"})
    assert isinstance(info.value, gateway_client.GatewayConnectionError)


def test_mlflow_alias_and_exports() -> None:
    assert gateway_client.MlflowGatewayClient is gateway_client.GatewayClient
    for name in ("set_gateway_uri", "get_gateway_uri", "create_route", "get_route", "search_routes"):
        assert callable(getattr(gateway_client, name))


# -- usage -----------------------------------------------------------------------------------------


def test_get_usage_sends_the_report_parameters_and_returns_decimals(gw: FakeGateway) -> None:
    from datetime import date
    from decimal import Decimal

    body = {"rows": [{"team_id": 3, "team": "search", "calls": 2, "errors": 1, "input_tokens": 10,
                      "output_tokens": 4, "total_tokens": 14, "cost_usd": "0.0000042000"}],
            "totals": {"calls": 2, "errors": 1, "input_tokens": 10, "output_tokens": 4, "total_tokens": 14,
                       "cost_usd": "0.0000042000"}}
    gw.on("GET", "/api/2.0/gateway/usage/", Reply(200, body))
    report = gateway_client.get_usage(["team", "day"], date(2025, 5, 1), "2025-05-31", team=3, route="chat")
    sent = gw.last
    assert sent.query == {"group_by": ["team,day"], "format": ["json"], "start": ["2025-05-01"],
                          "end": ["2025-05-31"], "team": ["3"], "route": ["chat"]}
    assert sent.headers["authorization"] == "Bearer gw-abc_secret"
    assert isinstance(report, gateway_client.UsageReport)
    assert report.rows[0]["cost_usd"] == Decimal("0.0000042") and report.totals["calls"] == 2
    assert report.to_dict() == body


def test_get_usage_csv_returns_the_text_and_errors_map(gw: FakeGateway) -> None:
    gw.on("GET", "/api/2.0/gateway/usage/",
          Reply(200, raw=b"team_id,team,calls\n3,search,2\n", headers={"Content-Type": "text/csv"}),
          Reply(403, {"error_code": "PERMISSION_DENIED", "message": "This key may only see its own team's usage."}))
    assert gateway_client.get_usage("team", format="csv") == "team_id,team,calls\n3,search,2\n"
    assert gw.last.query["format"] == ["csv"]
    with pytest.raises(gateway_client.PermissionDeniedError) as err:
        gateway_client.get_usage(team=9)
    assert err.value.error_code == "PERMISSION_DENIED"
    with pytest.raises(gateway_client.GatewayConfigError):
        gateway_client.get_usage(format="xml")

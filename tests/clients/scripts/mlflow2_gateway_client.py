"""Drive the real MLflow 2.x gateway client (mlflow-skinny==2.22.5) against a live gateway.

Runs INSIDE the client venv built by ``tests/clients/venvs.py`` (never imports project code) and
prints ONE JSON object as the last line of stdout::

    {"ok": bool, "mlflow_version": "2.22.5", "results": {step: {...}}, "errors": {step: "..."},
     "skipped": [step, ...]}

Every step runs on its own; a failing step is recorded in ``errors`` (with its traceback on
stderr) and the others still run. Exit code: 0 if ``ok`` else 1 (2 on bad arguments).

Inputs (environment variables; each also has a ``--flag``, see ``--help``):
  MLFLOW_GATEWAY_URI     live server base URL, e.g. http://127.0.0.1:8123 (required)
  MLFLOW_TRACKING_TOKEN  a consumer's gateway key; MLflow sends it as "Authorization: Bearer"
  GW_CHAT_ROUTE / GW_COMPLETIONS_ROUTE / GW_EMBEDDINGS_ROUTE
                         route names to query (a step is skipped when its name is not given);
                         the key must be granted these routes
  GW_MIN_PAGES           search_routes must take at least this many pages (default 2)
  GW_EXPECT_ROUTES       optional comma list of route names that must appear in search_routes
  GW_ADMIN_TOKEN         optional admin key: enables the create/get/delete step (through the
                         client's "databricks" mode, the only way MLflow 2.x lets you call
                         create_route/delete_route) and the set_limits/get_limits step
  GW_CREATE_ROUTE_JSON   optional body for that step: {"name", "route_type", "model": {...}};
                         default: an llm/v1/chat route on provider openai with a dummy key
  GW_LIMITS_ROUTE        route for set_limits/get_limits (default: the chat route)
  GW_STEPS               optional comma list to run only some steps (names as in "results")

Steps and what they record (``results[step]``):
  get_route        route fields as the client parsed them (``Route.model_dump()``)
  search_routes    pages, page sizes, all names (client.search_routes(page_token) paged by hand),
                   the fluent search_routes() names, duplicates (must be [])
  query_chat / query_completions / query_embeddings
                   the response dict exactly as ``query()`` returned it
  bad_token        for a wrong key and for no key: status and JSON body of the HTTPError
  unknown_route    status and body for get_route and query of a route that does not exist
  create_delete    create_route -> get_route -> delete_route -> get_route (404)
  limits           set_limits then get_limits (``LimitsConfig.model_dump()``)

Retries: MLflow retries 429/500/502/503 up to 7 times with exponential backoff, POSTs too.
Unless the caller sets them, this script sets MLFLOW_HTTP_REQUEST_MAX_RETRIES=0 and
MLFLOW_HTTP_REQUEST_TIMEOUT=60 so error tests are fast and each call hits the server once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
import warnings
from typing import Any

os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
warnings.simplefilter("ignore", FutureWarning)  # every gateway API warns "deprecated"

import mlflow  # noqa: E402
import mlflow.gateway as gw  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from script_common import Env, dump, expect_http_error  # noqa: E402

STEPS = (
    "get_route",
    "search_routes",
    "query_chat",
    "query_completions",
    "query_embeddings",
    "bad_token",
    "unknown_route",
    "create_delete",
    "limits",
)
UNKNOWN_ROUTE = "no-such-route-7f3c2a"




def step_get_route(a: argparse.Namespace) -> dict[str, Any]:
    name = a.chat_route or a.completions_route or a.embeddings_route
    if not name:
        raise SkipStep("no route name given")
    route = gw.get_route(name)
    out = dump(route)
    assert route.name == name, (route.name, name)
    out["_via_client_class"] = dump(gw.MlflowGatewayClient(a.gateway_uri).get_route(name))
    return out


def step_search_routes(a: argparse.Namespace) -> dict[str, Any]:
    client = gw.MlflowGatewayClient(a.gateway_uri)
    names: list[str] = []
    sizes: list[int] = []
    tokens: list[str] = []
    token: str | None = None
    for _ in range(1000):
        page = client.search_routes(page_token=token)
        sizes.append(len(page))
        names.extend(r.name for r in page)
        token = page.token
        if not token:
            break
        tokens.append(token)
    else:
        raise AssertionError("search_routes did not end after 1000 pages")
    fluent = [r.name for r in gw.search_routes()]
    dups = sorted({n for n in names if names.count(n) > 1})
    out = {
        "pages": len(sizes),
        "page_sizes": sizes,
        "names": names,
        "fluent_names": fluent,
        "duplicates": dups,
        "tokens": tokens,
    }
    assert not dups, f"duplicate routes across pages: {dups}"
    assert sorted(fluent) == sorted(names), "fluent search_routes() differs from manual paging"
    assert len(sizes) >= a.min_pages, f"expected >= {a.min_pages} pages, got {len(sizes)}"
    missing = [n for n in a.expect_routes if n not in names]
    assert not missing, f"routes missing from search_routes: {missing}"
    return out


def step_query_chat(a: argparse.Namespace) -> dict[str, Any]:
    if not a.chat_route:
        raise SkipStep("no chat route")
    resp = gw.query(
        route=a.chat_route,
        data={
            "messages": [{"role": "user", "content": "Say hello"}],
            "temperature": 0.5,
            "max_tokens": 20,
        },
    )
    assert isinstance(resp, dict), type(resp)
    assert resp["candidates"][0]["message"]["content"] is not None, resp
    assert resp["metadata"]["route_type"] == "llm/v1/chat", resp
    return resp


def step_query_completions(a: argparse.Namespace) -> dict[str, Any]:
    if not a.completions_route:
        raise SkipStep("no completions route")
    resp = gw.MlflowGatewayClient(a.gateway_uri).query(
        a.completions_route,
        {"prompt": "It's one small step for", "temperature": 0.2, "max_tokens": 20, "stop": ["."]},
    )
    assert isinstance(resp["candidates"][0]["text"], str), resp
    assert resp["metadata"]["route_type"] == "llm/v1/completions", resp
    return resp


def step_query_embeddings(a: argparse.Namespace) -> dict[str, Any]:
    if not a.embeddings_route:
        raise SkipStep("no embeddings route")
    resp = gw.query(
        route=a.embeddings_route,
        data={"text": ["It was the best of times", "It was the worst of times"]},
    )
    emb = resp["embeddings"]
    assert len(emb) == 2 and all(isinstance(x, float) for x in emb[0]), resp
    assert resp["metadata"]["route_type"] == "llm/v1/embeddings", resp
    return resp


def step_bad_token(a: argparse.Namespace) -> dict[str, Any]:
    name = a.chat_route or a.completions_route or a.embeddings_route or UNKNOWN_ROUTE
    out: dict[str, Any] = {}
    with Env(MLFLOW_TRACKING_TOKEN="gw-invalid_0000000000000000"):
        out["wrong_key_get_route"] = expect_http_error(gw.get_route, name)
        out["wrong_key_query"] = expect_http_error(gw.query, route=name, data={"prompt": "x"})
    with Env(MLFLOW_TRACKING_TOKEN=None):
        out["no_key_get_route"] = expect_http_error(gw.get_route, name)
        out["no_key_search_routes"] = expect_http_error(gw.search_routes)
    for k, v in out.items():
        assert v["status"] == 401, (k, v)
    return out


def step_unknown_route(a: argparse.Namespace) -> dict[str, Any]:
    out = {
        "get_route": expect_http_error(gw.get_route, UNKNOWN_ROUTE),
        "query": expect_http_error(gw.query, route=UNKNOWN_ROUTE, data={"prompt": "x"}),
    }
    for k, v in out.items():
        assert v["status"] == 404, (k, v)
    return out


def step_create_delete(a: argparse.Namespace) -> dict[str, Any]:
    if not a.admin_token:
        raise SkipStep("no admin token")
    body = (
        json.loads(a.create_route_json)
        if a.create_route_json
        else {
            "name": "mlflow2-created-route",
            "route_type": "llm/v1/chat",
            "model": {
                "name": "gpt-4o-mini",
                "provider": "openai",
                "config": {"openai_api_key": "sk-test-not-real"},
            },
        }
    )
    out: dict[str, Any] = {}
    # Outside "databricks" mode the 2.x client refuses before sending anything.
    try:
        gw.MlflowGatewayClient(a.gateway_uri).create_route(**body)
        raise AssertionError("create_route on a plain http URI did not raise")
    except MlflowException as exc:
        out["plain_uri_refused"] = str(exc)[:200]
    # "databricks" mode: host + token come from DATABRICKS_HOST / DATABRICKS_TOKEN; plain
    # requests (no databricks-sdk) so the wire is the same as the other calls.
    with Env(
        DATABRICKS_HOST=a.gateway_uri,
        DATABRICKS_TOKEN=a.admin_token,
        MLFLOW_ENABLE_DB_SDK="false",
    ):
        client = gw.MlflowGatewayClient("databricks")
        created = client.create_route(**body)
        out["created"] = dump(created)
        assert created.name == body["name"], out
        out["get_after_create"] = dump(client.get_route(body["name"]))
        # a consumer key must not be able to delete
        with Env(DATABRICKS_TOKEN=a.token or "gw-invalid_0"):
            out["delete_with_consumer_key"] = expect_http_error(client.delete_route, body["name"])
        client.delete_route(body["name"])
        out["get_after_delete"] = expect_http_error(client.get_route, body["name"])
    assert out["delete_with_consumer_key"]["status"] in (401, 403), out
    assert out["get_after_delete"]["status"] == 404, out
    return out


def step_limits(a: argparse.Namespace) -> dict[str, Any]:
    route = a.limits_route or a.chat_route
    if not a.admin_token or not route:
        raise SkipStep("no admin token or no route")
    limits = [{"calls": 50, "renewal_period": "minute", "key": "user"}]
    with Env(MLFLOW_TRACKING_TOKEN=a.admin_token):
        client = gw.MlflowGatewayClient(a.gateway_uri)
        set_ = dump(client.set_limits(route, limits))
        got = dump(client.get_limits(route))
    assert any(x["calls"] == 50 and x["renewal_period"] == "minute" for x in got["limits"]), got
    out: dict[str, Any] = {"set": set_, "get": got}
    if a.token:  # a consumer sees its own limits (the extra fields are ignored by the client)
        mine = dump(gw.MlflowGatewayClient(a.gateway_uri).get_limits(route))
        assert any(x["calls"] == 50 for x in mine["limits"]), mine
        out["consumer_get"] = mine
        out["route_limit"] = dump(gw.get_route(route))["limit"]
        assert out["route_limit"]["calls"] == 50 and out["route_limit"]["key"] == "user", out
    with Env(MLFLOW_TRACKING_TOKEN=a.admin_token):
        gw.MlflowGatewayClient(a.gateway_uri).set_limits(route, [])  # leave the route unlimited
    return out


class SkipStep(Exception):
    pass


def parse_args(argv: list[str]) -> argparse.Namespace:
    e = os.environ.get
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--gateway-uri", default=e("MLFLOW_GATEWAY_URI"))
    p.add_argument("--token", default=e("MLFLOW_TRACKING_TOKEN"))
    p.add_argument("--chat-route", default=e("GW_CHAT_ROUTE"))
    p.add_argument("--completions-route", default=e("GW_COMPLETIONS_ROUTE"))
    p.add_argument("--embeddings-route", default=e("GW_EMBEDDINGS_ROUTE"))
    p.add_argument("--min-pages", type=int, default=int(e("GW_MIN_PAGES") or 2))
    p.add_argument("--expect-routes", default=e("GW_EXPECT_ROUTES") or "")
    p.add_argument("--admin-token", default=e("GW_ADMIN_TOKEN"))
    p.add_argument("--create-route-json", default=e("GW_CREATE_ROUTE_JSON"))
    p.add_argument("--limits-route", default=e("GW_LIMITS_ROUTE"))
    p.add_argument("--steps", default=e("GW_STEPS") or ",".join(STEPS))
    a = p.parse_args(argv)
    if not a.gateway_uri:
        p.error("MLFLOW_GATEWAY_URI / --gateway-uri is required")
    a.expect_routes = [x for x in a.expect_routes.split(",") if x]
    a.steps = [x.strip() for x in a.steps.split(",") if x.strip()]
    unknown = [s for s in a.steps if s not in STEPS]
    if unknown:
        p.error(f"unknown steps {unknown}; known: {', '.join(STEPS)}")
    return a


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    os.environ["MLFLOW_GATEWAY_URI"] = a.gateway_uri
    if a.token:
        os.environ["MLFLOW_TRACKING_TOKEN"] = a.token
    gw.set_gateway_uri(a.gateway_uri)
    assert gw.get_gateway_uri() == a.gateway_uri
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    skipped: list[str] = []
    for name in a.steps:
        fn = globals()[f"step_{name}"]
        try:
            results[name] = fn(a)
        except SkipStep:
            skipped.append(name)
        except BaseException as exc:  # record and go on
            if isinstance(exc, KeyboardInterrupt):
                raise
            errors[name] = f"{type(exc).__name__}: {exc}"[:2000]
            print(f"--- step {name} failed ---", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
    report = {
        "ok": not errors,
        "mlflow_version": mlflow.__version__,
        "results": results,
        "errors": errors,
        "skipped": skipped,
    }
    sys.stdout.write(json.dumps(report, default=str) + "\n")
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Drive the real MLflow 3.x deployments client (mlflow-skinny>=3,<4) against a live gateway.

``mlflow.deployments.get_deploy_client("http://host:port")`` -> ``MlflowDeploymentClient``
(contract 2 of DESIGN.md; wire details in ``tests/clients/MLFLOW_DEPLOYMENTS_CONTRACT.md``).

Runs INSIDE the client venv built by ``tests/clients/venvs.py`` (never imports project code) and
prints ONE JSON object as the last line of stdout::

    {"ok": bool, "mlflow_version": "3.x.y", "results": {step: {...}}, "errors": {step: "..."},
     "skipped": [step, ...]}

Every step runs on its own; a failing step is recorded in ``errors`` (with its traceback on
stderr) and the others still run. Exit code: 0 if ``ok`` else 1 (2 on bad arguments).

Inputs (environment variables; each also has a ``--flag``, see ``--help``):
  GW_URL                 live server base URL, e.g. http://127.0.0.1:8123 (required; falls back
                         to MLFLOW_DEPLOYMENTS_TARGET)
  MLFLOW_TRACKING_TOKEN  a consumer's gateway key; MLflow sends it as "Authorization: Bearer"
  GW_CHAT_ENDPOINT / GW_COMPLETIONS_ENDPOINT / GW_EMBEDDINGS_ENDPOINT
                         endpoint (route) names to query (a step is skipped when its name is not
                         given); the key must be granted these endpoints
  GW_MIN_PAGES           list_endpoints must take at least this many pages (default 2)
  GW_EXPECT_ENDPOINTS    optional comma list of names that must appear in list_endpoints
                         (the chat/completions/embeddings names given are always expected)
  GW_STEPS               optional comma list to run only some steps (names as in "results")

Steps and what they record (``results[step]``):
  list_endpoints      the public ``list_endpoints()`` (the client pages by itself; pages counted by
                      wrapping its private ``_list_endpoints``) and a manual walk with
                      ``_list_endpoints(page_token)``: pages, page sizes, tokens, names,
                      duplicates (must be []); a ``next_page_token`` of "" fails fast (it makes
                      the real client loop forever)
  get_endpoint        per given endpoint: ``Endpoint.model_dump()`` and the raw JSON (``limit``
                      key present, ``endpoint_type`` as expected, ``model.provider`` set,
                      ``endpoint_url`` resolved to an absolute URL ending in /{name}/invocations)
  predict_chat / predict_completions / predict_embeddings
                      the response dict exactly as ``predict()`` returned it (OpenAI-shaped)
  bad_token           wrong key and no key: status and body of the HTTPError (all 401), incl. a
                      wrong key with an invalid body (must still be 401, not 400)
  unknown_endpoint    get_endpoint and predict of an endpoint that does not exist (404)
  bad_body            predict with temperature 3 (400)

Retries: MLflow retries 429/500/502/503 and read timeouts up to 7 times with exponential
backoff, POSTs too. Unless the caller sets them, this script sets
MLFLOW_HTTP_REQUEST_MAX_RETRIES=0, MLFLOW_DEPLOYMENT_PREDICT_TIMEOUT=60,
MLFLOW_DEPLOYMENT_CLIENT_HTTP_REQUEST_TIMEOUT=60 and MLFLOW_HTTP_REQUEST_TIMEOUT=60 (older 3.x
use it for get/list) so each call hits the server once, and
MLFLOW_DISABLE_TELEMETRY=true / DO_NOT_TRACK=true (``import mlflow`` otherwise starts a
telemetry client that talks to the internet).
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
os.environ.setdefault("MLFLOW_DEPLOYMENT_PREDICT_TIMEOUT", "60")
os.environ.setdefault("MLFLOW_DEPLOYMENT_CLIENT_HTTP_REQUEST_TIMEOUT", "60")  # get/list in 3.17
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")  # get/list in older 3.x (3.0.0)
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
warnings.simplefilter("ignore", FutureWarning)

import mlflow  # noqa: E402
from mlflow.deployments import get_deploy_client  # noqa: E402
from script_common import Env, dump, expect_http_error  # noqa: E402

STEPS = (
    "list_endpoints",
    "get_endpoint",
    "predict_chat",
    "predict_completions",
    "predict_embeddings",
    "bad_token",
    "unknown_endpoint",
    "bad_body",
)
UNKNOWN_ENDPOINT = "no-such-endpoint-7f3c2a"
MAX_PAGES = 1000
EXPECTED_TYPES = {
    "chat_endpoint": "llm/v1/chat",
    "completions_endpoint": "llm/v1/completions",
    "embeddings_endpoint": "llm/v1/embeddings",
}
CHAT_BODY = {
    "messages": [{"role": "user", "content": "Say hello"}],
    "temperature": 0.7,
    "max_tokens": 20,
    "n": 1,
}


class SkipStep(Exception):
    pass




def _client(a: argparse.Namespace) -> Any:
    client = get_deploy_client(a.url)
    name = type(client).__name__
    assert name == "MlflowDeploymentClient", f"get_deploy_client({a.url!r}) gave {name}"
    return client


def _given(a: argparse.Namespace) -> dict[str, str]:
    """{attr: endpoint name} for the endpoints given."""
    return {k: getattr(a, k) for k in EXPECTED_TYPES if getattr(a, k)}


def _check_token(token: Any, where: str) -> None:
    assert token is None or (isinstance(token, str) and token), (
        f"{where}: next_page_token {token!r}: the 3.x client stops only on null/absent; "
        "an empty string makes list_endpoints() loop forever"
    )


def step_list_endpoints(a: argparse.Namespace) -> dict[str, Any]:
    client = _client(a)
    # 1. Manual walk with the client's own page call.
    names: list[str] = []
    sizes: list[int] = []
    tokens: list[str] = []
    token: str | None = None
    for _ in range(MAX_PAGES):
        page = client._list_endpoints(token)
        sizes.append(len(page))
        names.extend(e.name for e in page)
        token = page.token
        _check_token(token, f"manual page {len(sizes)}")
        if token is None:
            break
        tokens.append(token)
    else:
        raise AssertionError(f"_list_endpoints did not end after {MAX_PAGES} pages")

    # 2. The public call, which pages by itself; count its pages (and never loop forever).
    orig = client._list_endpoints
    public_tokens: list[Any] = []

    def counted(page_token: Any = None) -> Any:
        if len(public_tokens) >= MAX_PAGES:
            raise AssertionError(f"list_endpoints() did not end after {MAX_PAGES} pages")
        public_tokens.append(page_token)
        page = orig(page_token)
        _check_token(page.token, f"list_endpoints() page {len(public_tokens)}")
        return page

    client._list_endpoints = counted
    endpoints = client.list_endpoints()
    public = [e.name for e in endpoints]

    dups = sorted({n for n in names if names.count(n) > 1})
    expected = list(dict.fromkeys([*_given(a).values(), *a.expect_endpoints]))
    missing = [n for n in expected if n not in public]
    out = {
        "pages": len(sizes),
        "page_sizes": sizes,
        "tokens": tokens,
        "names": names,
        "public_pages": len(public_tokens),
        "public_page_tokens": public_tokens,
        "public_names": public,
        "duplicates": dups,
        "missing": missing,
        "sample": dump(endpoints[0]) if endpoints else None,
    }
    assert not dups, f"duplicate endpoints across pages: {dups}"
    assert public == names, "list_endpoints() differs from the manual page walk"
    assert len(public_tokens) >= a.min_pages, f"expected >= {a.min_pages} pages, got {len(public_tokens)}"
    assert not missing, f"endpoints missing from list_endpoints(): {missing}"
    return out


def step_get_endpoint(a: argparse.Namespace) -> dict[str, Any]:
    given = _given(a)
    if not given:
        raise SkipStep("no endpoint name given")
    client = _client(a)
    base = a.url.rstrip("/")
    out: dict[str, Any] = {}
    for attr, name in given.items():
        ep = client.get_endpoint(name)
        raw = client._call_endpoint("GET", f"/api/2.0/endpoints/{name}")
        dumped = dump(ep)
        out[name] = {"endpoint": dumped, "raw": raw}
        assert ep.name == name, (ep.name, name)
        assert ep.endpoint_type == EXPECTED_TYPES[attr], (name, ep.endpoint_type)
        assert isinstance(ep.model.provider, str) and ep.model.provider, dumped
        assert "limit" in raw, f"{name}: raw response has no 'limit' key: {raw}"
        url = ep.endpoint_url
        assert url.startswith(("http://", "https://")), f"endpoint_url not resolved: {url}"
        assert url.endswith(f"/{name}/invocations"), f"unexpected endpoint_url {url}"
        out[name]["endpoint_url_on_base"] = url.startswith(base + "/")
    return out


def _check_usage(resp: dict[str, Any], keys: tuple[str, ...]) -> None:
    usage = resp.get("usage")
    assert isinstance(usage, dict), f"no usage: {resp}"
    for k in keys:
        assert isinstance(usage.get(k), int) and not isinstance(usage.get(k), bool), (k, usage)


def step_predict_chat(a: argparse.Namespace) -> dict[str, Any]:
    if not a.chat_endpoint:
        raise SkipStep("no chat endpoint")
    resp = _client(a).predict(endpoint=a.chat_endpoint, inputs=dict(CHAT_BODY))
    assert isinstance(resp, dict), type(resp)
    choices = resp["choices"]
    assert len(choices) == 1, f"n=1 gave {len(choices)} choices: {resp}"
    msg = choices[0]["message"]
    assert msg.get("role") == "assistant", resp
    assert isinstance(msg.get("content"), str), resp
    _check_usage(resp, ("prompt_tokens", "completion_tokens", "total_tokens"))
    return resp


def step_predict_completions(a: argparse.Namespace) -> dict[str, Any]:
    if not a.completions_endpoint:
        raise SkipStep("no completions endpoint")
    resp = _client(a).predict(
        endpoint=a.completions_endpoint,
        inputs={"prompt": "It's one small step for", "temperature": 0.2, "max_tokens": 20},
    )
    assert isinstance(resp, dict), type(resp)
    assert isinstance(resp["choices"][0]["text"], str), resp
    _check_usage(resp, ("prompt_tokens", "completion_tokens", "total_tokens"))
    return resp


def step_predict_embeddings(a: argparse.Namespace) -> dict[str, Any]:
    if not a.embeddings_endpoint:
        raise SkipStep("no embeddings endpoint")
    resp = _client(a).predict(endpoint=a.embeddings_endpoint, inputs={"input": ["a", "b"]})
    assert isinstance(resp, dict), type(resp)
    data = resp["data"]
    assert len(data) == 2, resp
    for item in data:
        emb = item["embedding"]
        assert emb and all(isinstance(x, float) for x in emb), item
    _check_usage(resp, ("prompt_tokens", "total_tokens"))
    return resp


def step_bad_token(a: argparse.Namespace) -> dict[str, Any]:
    name = a.chat_endpoint or a.completions_endpoint or a.embeddings_endpoint or UNKNOWN_ENDPOINT
    client = _client(a)
    out: dict[str, Any] = {}
    with Env(MLFLOW_TRACKING_TOKEN="gw-invalid_0000000000000000"):
        out["wrong_key_get_endpoint"] = expect_http_error(client.get_endpoint, name)
        out["wrong_key_list_endpoints"] = expect_http_error(client.list_endpoints)
        out["wrong_key_predict"] = expect_http_error(client.predict, endpoint=name, inputs=dict(CHAT_BODY))
        # auth before validation: a bad key with a bad body is 401, not 400
        out["wrong_key_bad_body"] = expect_http_error(
            client.predict, endpoint=name, inputs={**CHAT_BODY, "temperature": 3}
        )
    with Env(MLFLOW_TRACKING_TOKEN=None):
        out["no_key_get_endpoint"] = expect_http_error(client.get_endpoint, name)
        out["no_key_predict"] = expect_http_error(client.predict, endpoint=name, inputs=dict(CHAT_BODY))
    for k, v in out.items():
        assert v["status"] == 401, (k, v)
    return out


def step_unknown_endpoint(a: argparse.Namespace) -> dict[str, Any]:
    client = _client(a)
    out = {
        "get_endpoint": expect_http_error(client.get_endpoint, UNKNOWN_ENDPOINT),
        "predict": expect_http_error(client.predict, endpoint=UNKNOWN_ENDPOINT, inputs=dict(CHAT_BODY)),
    }
    for k, v in out.items():
        assert v["status"] == 404, (k, v)
    return out


def step_bad_body(a: argparse.Namespace) -> dict[str, Any]:
    if not a.chat_endpoint:
        raise SkipStep("no chat endpoint")
    out = {
        "temperature_3": expect_http_error(
            _client(a).predict, endpoint=a.chat_endpoint, inputs={**CHAT_BODY, "temperature": 3}
        )
    }
    for k, v in out.items():
        assert v["status"] == 400, (k, v)
    return out


def parse_args(argv: list[str]) -> argparse.Namespace:
    e = os.environ.get
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--url", default=e("GW_URL") or e("MLFLOW_DEPLOYMENTS_TARGET"))
    p.add_argument("--token", default=e("MLFLOW_TRACKING_TOKEN"))
    p.add_argument("--chat-endpoint", default=e("GW_CHAT_ENDPOINT"))
    p.add_argument("--completions-endpoint", default=e("GW_COMPLETIONS_ENDPOINT"))
    p.add_argument("--embeddings-endpoint", default=e("GW_EMBEDDINGS_ENDPOINT"))
    p.add_argument("--min-pages", type=int, default=int(e("GW_MIN_PAGES") or 2))
    p.add_argument("--expect-endpoints", default=e("GW_EXPECT_ENDPOINTS") or "")
    p.add_argument("--steps", default=e("GW_STEPS") or ",".join(STEPS))
    a = p.parse_args(argv)
    if not a.url:
        p.error("GW_URL / --url is required")
    if not a.url.startswith(("http://", "https://")):
        p.error(f"GW_URL must be an http(s) URL, got {a.url!r}")
    a.expect_endpoints = [x.strip() for x in a.expect_endpoints.split(",") if x.strip()]
    a.steps = [x.strip() for x in a.steps.split(",") if x.strip()]
    unknown = [s for s in a.steps if s not in STEPS]
    if unknown:
        p.error(f"unknown steps {unknown}; known: {', '.join(STEPS)}")
    return a


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    if a.token:
        os.environ["MLFLOW_TRACKING_TOKEN"] = a.token
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

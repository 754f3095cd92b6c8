"""Every provider that streams, against its fake upstream, streamed through both API families that
stream (the OpenAI-compatible API and MLflow deployments) on the real server, and recorded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.test_serving_mlflow_routes import ready, wait_for
from tests.fake_upstream.server import FakeUpstream
from tests.providers.test_openai_compatible_upstream import KEYS, PROVIDERS
from usage.models import UsageEvent

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

F = FakeUpstream
Config = Callable[[FakeUpstream], dict[str, Any]]


def compatible(name: str) -> tuple[str, str, Config]:
    provider = PROVIDERS[name]

    def config(fake: FakeUpstream) -> dict[str, Any]:
        key = KEYS[name]
        return {provider.base_field: fake.compatible_base(name), **({provider.key_field: key} if key else {})}

    return name, "m-1", config


VENDORS: list[tuple[str, str, Config]] = [
    ("openai", "gpt-4o-mini", lambda f: {"openai_api_key": F.OPENAI_KEY, "openai_api_base": f.openai_base}),
    ("anthropic", "claude-3-5-haiku-latest",
     lambda f: {"anthropic_api_key": F.ANTHROPIC_KEY, "anthropic_api_base": f.anthropic_base}),
    ("cohere", "command-r", lambda f: {"cohere_api_key": F.COHERE_KEY, "cohere_api_base": f.cohere_base}),
    ("gemini", "gemini-2.0-flash", lambda f: {"gemini_api_key": F.GEMINI_KEY, "gemini_api_base": f.gemini_base}),
    ("mistral", "mistral-small-latest",
     lambda f: {"mistral_api_key": F.MISTRAL_KEY, "mistral_api_base": f.mistral_base}),
    ("databricks-model-serving", "llama-chat",
     lambda f: {"databricks_workspace_url": f.databricks_url, "databricks_api_token": F.DATABRICKS_TOKEN}),
    ("huggingface-text-generation-inference", "llama", lambda f: {"hf_server_url": f.hf_server_url}),
    ("ai21labs", "jamba-mini", lambda f: {"ai21labs_api_key": F.AI21LABS_KEY, "ai21labs_api_base": f.ai21labs_base}),
    ("amazon-bedrock", "anthropic.claude-3-haiku-20240307-v1:0",
     lambda f: {"aws_region": F.AWS_REGION, "bedrock_api_base": f.bedrock_base,
                "aws_access_key_id": F.AWS_ACCESS_KEY_ID, "aws_secret_access_key": F.AWS_SECRET_ACCESS_KEY}),
    *(compatible(name) for name in sorted(PROVIDERS)),
]


def sse_text(response: httpx.Response) -> tuple[str, list[Any]]:
    events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    parsed = [orjson.loads(e) for e in events if e != "[DONE]"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in parsed if c.get("choices"))
    return text, events


@pytest.mark.parametrize(("provider", "model", "config"), VENDORS, ids=[v[0] for v in VENDORS])
def test_vendor_streams_through_both_families(gateway_server, make_route, make_caller, fake_upstream,
                                              provider, model, config) -> None:
    name = f"st-{provider}"[:60]
    route = make_route(name=name, provider=provider, model_name=model, config=config(fake_upstream), max_retries=0)
    caller = make_caller(routes=(route,))
    ready(gateway_server, caller.key, name)
    messages = [{"role": "user", "content": "Tell me about gateways"}]
    with httpx.Client(base_url=gateway_server.url, timeout=30) as client:
        plain = client.post("/v1/chat/completions", headers=caller.headers, json={"model": name, "messages": messages})
        assert plain.status_code == 200, plain.text
        expected = plain.json()["choices"][0]["message"]["content"]
        for path, body in (("/v1/chat/completions", {"model": name}), (f"/endpoints/{name}/invocations", {})):
            with client.stream("POST", path, headers=caller.headers,
                               json={**body, "messages": messages, "stream": True}) as response:
                assert response.status_code == 200, response.read()
                text, events = sse_text(response)
                request_id = response.headers["x-request-id"]
            assert events[-1] == "[DONE]", events[-3:]
            assert text == expected and text
            event = wait_for(lambda rid=request_id: UsageEvent.objects.filter(request_id=rid).first())
            assert (event.stream, event.status_code, event.provider) == (True, 200, provider)
            assert event.input_tokens > 0 and event.output_tokens > 0

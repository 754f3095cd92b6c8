"""`UpstreamClient` and `execute`: every fault mode of the fake upstream maps to the right error."""

from __future__ import annotations

import socket
import time
import traceback

import httpx
import pytest

from providers.base import (
    ChatMessage,
    ChatRequest,
    ChatResponse,
    GatewayError,
    Provider,
    RouteType,
    Secrets,
    StdRequest,
    Target,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from providers.client import UpstreamClient, execute
from providers.registry import get_provider
from tests.fake_upstream import FakeUpstream

openai = get_provider("openai")
CHAT = ChatRequest([ChatMessage("user", "Hello, world!")])


def target(fake: FakeUpstream, model: str = "gpt-4o-mini") -> Target:
    return Target(
        "openai",
        model,
        {"openai_api_base": fake.openai_base},
        Secrets({"openai_api_key": FakeUpstream.OPENAI_KEY}),
    )


@pytest.mark.parametrize(
    ("fault", "error_class", "status", "code"),
    [
        ("500", UpstreamError, 502, "UPSTREAM_ERROR"),
        ("503", UpstreamError, 502, "UPSTREAM_ERROR"),
        ("429-7", UpstreamError, 502, "UPSTREAM_RATE_LIMITED"),
        ("garbage", UpstreamBadResponse, 502, "UPSTREAM_BAD_RESPONSE"),
        ("incomplete", UpstreamBadResponse, 502, "UPSTREAM_BAD_RESPONSE"),
        ("close", UpstreamUnavailable, 502, "UPSTREAM_UNAVAILABLE"),
        ("close-mid", UpstreamUnavailable, 502, "UPSTREAM_UNAVAILABLE"),
        ("bad-http", UpstreamUnavailable, 502, "UPSTREAM_UNAVAILABLE"),
        ("sleep-3", UpstreamTimeout, 504, "UPSTREAM_TIMEOUT"),
    ],
)
@pytest.mark.parametrize("how", ["magic-model", "queued", "azure-deployment"])
async def test_fault_modes_map_to_gateway_errors(
    fake_upstream: FakeUpstream,
    client: UpstreamClient,
    fault: str,
    error_class: type[GatewayError],
    status: int,
    code: str,
    how: str,
) -> None:
    if how == "magic-model":
        chosen = target(fake_upstream, model=f"fault-{fault}")
    elif how == "queued":
        fake_upstream.add_fault(fault)
        chosen = target(fake_upstream)
    else:
        chosen = Target(
            "openai",
            "gpt-4o",
            {
                "openai_api_type": "azure",
                "openai_api_base": fake_upstream.url,
                "openai_deployment_name": f"fault-{fault}",
                "openai_api_version": "2024-02-01",
            },
            Secrets({"openai_api_key": FakeUpstream.AZURE_KEY}),
        )

    with pytest.raises(error_class) as caught:
        await execute(openai, chosen, CHAT, client=client, timeout=0.5)

    error = caught.value
    assert type(error) is error_class
    assert (error.status, error.code) == (status, code)
    assert error.retry_after == (7.0 if fault == "429-7" else None)
    assert fake_upstream.requests, "the request must have reached the fake upstream"
    # Callers never learn where the upstream lives.
    assert str(fake_upstream.port) not in error.message and "127.0.0.1" not in error.message


async def test_a_queued_fault_hits_only_the_next_request(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    fake_upstream.add_fault("500")
    with pytest.raises(UpstreamError):
        await execute(openai, target(fake_upstream), CHAT, client=client)
    response = await execute(openai, target(fake_upstream), CHAT, client=client)
    assert isinstance(response, ChatResponse)
    assert len(fake_upstream.requests) == 2


async def test_the_pool_still_works_after_timeouts_and_dropped_connections(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    for fault in ("sleep-2", "close", "close-mid"):
        with pytest.raises(GatewayError):
            await execute(
                openai, target(fake_upstream, model=f"fault-{fault}"), CHAT, client=client, timeout=0.3
            )
    response = await execute(openai, target(fake_upstream), CHAT, client=client)
    assert isinstance(response, ChatResponse)
    assert response.choices[0].message.content == "Fake answer to: Hello, world!"


async def test_timeout_is_the_whole_call_and_defaults_to_the_clients(fake_upstream: FakeUpstream) -> None:
    async with UpstreamClient(timeout=0.3) as short:
        started = time.monotonic()
        with pytest.raises(UpstreamTimeout, match=r"0\.3 s"):
            await execute(openai, target(fake_upstream, model="fault-sleep-3"), CHAT, client=short)
        assert time.monotonic() - started < 2.0
        # A per-call timeout overrides the client's default.
        response = await execute(
            openai, target(fake_upstream, model="fault-sleep-0.5"), CHAT, client=short, timeout=3.0
        )
        assert isinstance(response, ChatResponse)


def test_default_timeouts_are_60s_total_and_10s_connect() -> None:
    client = UpstreamClient()
    assert (client.timeout, client.connect_timeout) == (60.0, 10.0)


async def test_refused_connection_is_unavailable(client: UpstreamClient) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = Target(
        "openai", "m", {"openai_api_base": f"http://127.0.0.1:{port}/v1"}, Secrets({"openai_api_key": "sk-x"})
    )
    with pytest.raises(UpstreamUnavailable) as caught:
        await execute(openai, dead, CHAT, client=client)
    assert caught.value.status == 502
    assert str(port) not in caught.value.message


async def test_oversized_answer_is_a_bad_response(fake_upstream: FakeUpstream) -> None:
    async with UpstreamClient(max_body_bytes=64) as small:
        with pytest.raises(UpstreamBadResponse, match="too large"):
            await execute(openai, target(fake_upstream), CHAT, client=small)


async def test_transport_errors_carry_no_headers_in_any_rendering(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    # aiohttp's exception for a non-HTTP answer has the request headers (the key) in its repr.
    with pytest.raises(UpstreamUnavailable) as caught:
        await execute(openai, target(fake_upstream, model="fault-bad-http"), CHAT, client=client)
    error = caught.value
    rendered = "\n".join(
        [
            str(error),
            repr(error),
            repr(error.args),
            *error.__notes__,
            "".join(traceback.format_exception(error)),
        ]
    )
    assert FakeUpstream.OPENAI_KEY not in rendered
    assert FakeUpstream.OPENAI_KEY[3:11] not in rendered
    assert error.__cause__ is None and error.__context__ is None
    assert any("ClientResponseError" in note for note in error.__notes__)


async def test_send_returns_any_status_with_headers_and_body(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    request = UpstreamRequest(
        "POST",
        f"{fake_upstream.openai_base}/chat/completions",
        {"Authorization": f"Bearer {FakeUpstream.OPENAI_KEY}"},
        json={"model": "fault-429-2", "messages": []},
    )
    response = await client.send(request)
    assert response.status == 429
    assert response.headers["Retry-After"] == "2"
    assert b"rate_limit_exceeded" in response.body


async def test_local_providers_answer_without_a_client() -> None:
    response = await execute(get_provider("mock"), Target("mock", "m"), CHAT, client=None)
    assert isinstance(response, ChatResponse)
    assert response.choices[0].message.content == "This is a mock answer to: Hello, world!"


async def test_network_providers_require_a_client() -> None:
    with pytest.raises(RuntimeError, match="UpstreamClient"):
        await execute(openai, Target("openai", "m", {}, Secrets({"openai_api_key": "k"})), CHAT, client=None)


class _BrokenErrorMapper(Provider):
    name = "broken"
    route_types = frozenset(RouteType)

    def build_request(self, target: Target, request: StdRequest) -> UpstreamRequest:
        return UpstreamRequest("POST", target.config["url"], {}, json={"model": "fault-500", "messages": []})

    def map_error(self, target: Target, response: UpstreamResponse) -> GatewayError:
        raise KeyError("bug")


async def test_a_failing_error_mapper_still_yields_an_upstream_error(
    fake_upstream: FakeUpstream, client: UpstreamClient
) -> None:
    broken = Target("broken", "m", {"url": f"{fake_upstream.openai_base}/chat/completions"})
    with pytest.raises(UpstreamError) as caught:
        await execute(_BrokenErrorMapper(), broken, CHAT, client=client)
    assert (caught.value.status, caught.value.code) == (502, "UPSTREAM_ERROR")
    assert "HTTP 500" in caught.value.message


async def test_a_cookie_one_vendor_answer_sets_never_rides_on_the_next_call() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("cookie"))
        return httpx.Response(200, headers={"Set-Cookie": "session=consumer-a; Path=/"}, json={})

    async with UpstreamClient(transport=httpx.MockTransport(handler)) as shared:
        for _ in range(2):
            await shared.send(UpstreamRequest("POST", "http://vendor.test/v1/x", {}, json={}))
    assert seen == [None, None]

"""A fake LLM vendor over real HTTP on 127.0.0.1, for tests, a subprocess gateway and benchmarks.

In a test (sync or async; the server runs its own event loop in a background thread):

    with FakeUpstream() as fake:                      # or fake = FakeUpstream().start(); fake.stop()
        target = Target("openai", "gpt-4o-mini", {"openai_api_base": fake.openai_base},
                        Secrets({"openai_api_key": FakeUpstream.OPENAI_KEY}))
        ...
        assert fake.requests[-1].headers["authorization"] == f"Bearer {FakeUpstream.OPENAI_KEY}"
        fake.add_fault("500")                         # the next vendor request answers 500

The pytest fixtures in `tests.fake_upstream.fixtures` share one server per session and reset it
before each test. From another process: `python -m tests.fake_upstream.server [--port N]` prints
one JSON line (`{"url": ..., "openai_key": ..., "azure_key": ..., "azuread_token": ...,
"anthropic_key": ..., "cohere_key": ..., "gemini_key": ..., "groq_key": ..., "deepseek_key": ...,
"xai_key": ..., "openrouter_key": ..., "togetherai_key": ..., "vllm_key": ..., "mistral_key": ...,
"databricks_token": ...}`) and serves until SIGTERM/SIGINT;
the control endpoints then do what the methods do:
`GET /__fake__/requests`, `POST /__fake__/reset`, `POST /__fake__/faults {"fault", "times"}`.

Vendors: each is one handler module with `routes(state) -> list[web.RouteDef]`, listed in
`VENDOR_MODULES`. Faults: see `tests.fake_upstream.faults`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

from aiohttp import web

from tests.fake_upstream import ai21labs as ai21labs_vendor
from tests.fake_upstream import anthropic as anthropic_vendor
from tests.fake_upstream import bedrock as bedrock_vendor
from tests.fake_upstream import cohere as cohere_vendor
from tests.fake_upstream import databricks as databricks_vendor
from tests.fake_upstream import gemini as gemini_vendor
from tests.fake_upstream import huggingface as huggingface_vendor
from tests.fake_upstream import mistral as mistral_vendor
from tests.fake_upstream import mlflow_serving as mlflow_serving_vendor
from tests.fake_upstream import mosaicml as mosaicml_vendor
from tests.fake_upstream import openai as openai_vendor
from tests.fake_upstream import openai_compatible as openai_compatible_vendor
from tests.fake_upstream.faults import Fault
from tests.fake_upstream.state import Credentials, FakeState, RecordedRequest

VENDOR_MODULES: tuple[ModuleType, ...] = (
    openai_vendor, anthropic_vendor, cohere_vendor, gemini_vendor,
    openai_compatible_vendor, mistral_vendor, databricks_vendor, mlflow_serving_vendor,
    huggingface_vendor, ai21labs_vendor, mosaicml_vendor, bedrock_vendor,
)
CONTROL_PREFIX = "/__fake__/"


def build_app(state: FakeState) -> web.Application:
    """The aiohttp app: every vendor's routes, request recording, and the control endpoints."""

    @web.middleware
    async def record(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not request.path.startswith(CONTROL_PREFIX):
            body = await request.read()
            try:
                parsed: Any = json.loads(body) if body else None
            except ValueError:
                parsed = None
            state.record(
                RecordedRequest(
                    method=request.method,
                    path=request.path,
                    query=dict(request.query),
                    headers={name.lower(): value for name, value in request.headers.items()},
                    json=parsed,
                    body=body,
                )
            )
        return await handler(request)

    async def list_requests(request: web.Request) -> web.Response:
        return web.json_response([r.to_dict() for r in state.requests()])

    async def reset(request: web.Request) -> web.Response:
        state.reset()
        return web.json_response({"ok": True})

    async def add_fault(request: web.Request) -> web.Response:
        data = await request.json()
        spec, times = str(data["fault"]), int(data.get("times", 1))
        try:
            Fault.parse(spec)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        state.add_fault(spec, times)
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[record])
    app.add_routes(
        [
            web.get(f"{CONTROL_PREFIX}requests", list_requests),
            web.post(f"{CONTROL_PREFIX}reset", reset),
            web.post(f"{CONTROL_PREFIX}faults", add_fault),
        ]
    )
    for module in VENDOR_MODULES:
        app.add_routes(module.routes(state))
    return app


class FakeUpstream:
    """A fake vendor server on a real TCP port, run in a daemon thread with its own event loop.

    Thread-safe: every method may be called from any thread, including inside an async test.
    """

    OPENAI_KEY = "sk-fake9Qm4Xr7Lp2Vt8Wz6Kd3N"
    AZURE_KEY = "3f9a6c1e8b2d4f7a9c0e5b1d7a3f8c2e"
    AZUREAD_TOKEN = "eyJ0eXAiOiJKV1QifQ.eyJhdWQiOiJmYWtlIn0.ZmFrZS1hYWQtc2lnbmF0dXJl"
    ANTHROPIC_KEY = "sk-ant-api03-fakeR4nd0mK3yZq8Wv2Lp6Tx"
    COHERE_KEY = "Zk3Qw8Rt5Yp2Lm7Nx4Vb9Hc6Jd1Fg0Se2Wa5Tq8Ue"
    GEMINI_KEY = "AIzaSyFAKE7q3Lm9Xv2Tk8Rb4Wc6Hd1Np5Zs0Jg"
    # OpenAI-compatible vendors (tests.fake_upstream.openai_compatible); Ollama takes no key.
    GROQ_KEY = "gsk_fakeW8xQ2mL5vR9tK3pN7cZ4hJ6dB1yF0aS"
    DEEPSEEK_KEY = "sk-fakedeep5e3k9Qm2Lx7Vt4Wz8Rn6Pb"
    XAI_KEY = "xai-fakeQ7mZ2pL9vX4tR8wK3nB6cJ5hD1yF0sG"
    OPENROUTER_KEY = "sk-or-v1-fake3b9e1c7a5d2f8e4b6a0c9d1e7f3a5b2c"
    TOGETHERAI_KEY = "tgp_v1_fakeH4jK8mN2pQ6rS9tV3wX7yZ1aB5cD"
    VLLM_KEY = "token-fakevllm7Kq2Wm9Xp4"
    MISTRAL_KEY = "fakeMistr4lKey9Qw2Er7Ty5Ui3Op8As"
    DATABRICKS_TOKEN = "dapifake0123456789abcdef0123456789ab"
    HF_TOKEN = "hf_fakeT9gKq2Wm7Xp4Lv8Rz3Nc6Bd1Hy5Js0Fa"
    AI21LABS_KEY = "fakeQ8wE3rT6yU9iO2pA5sD7fG4hJ1kLz"
    MOSAICML_KEY = "fakeM7Hn2Zp9Lm4Xv8Tk3RbYc6Wq1Ja"
    # Amazon Bedrock: a long-term access key, a temporary one (needs its session token), a Bedrock
    # API key, and a role the fake STS grants; calls must be signed for AWS_REGION.
    AWS_REGION = "us-east-1"
    AWS_ACCESS_KEY_ID = "AKIAFAKE7QM4XR2LP9VT"
    AWS_SECRET_ACCESS_KEY = "fAkE/9Qm4Xr7Lp2Vt8Wz6Kd3NbYc5Hj1Sg0aE2rT"
    AWS_TEMP_ACCESS_KEY_ID = "ASIAFAKE3WZ6KD8NBYC5"
    AWS_TEMP_SECRET_ACCESS_KEY = "tEmP+7Lp2Vt8Wz6Kd3NbYc5Hj1Sg0aE2rTfAkE9Q"
    AWS_SESSION_TOKEN = "IQoJb3JpZ2luX2VjEFAKEsessionTOKENfake7Qm4Xr2Lp9Vt8Wz6Kd3NbYc5Hj1Sg0aE2rT"
    BEDROCK_API_KEY = "ABSKQmVkcm9ja0FQSUtleS1mYWtlLWF0LTEyMzQ1Njc4OTAxMjpGYWtlU2VjcmV0"
    AWS_ROLE_ARN = "arn:aws:iam::123456789012:role/fake-bedrock-invoker"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        openai_keys: tuple[str, ...] = (OPENAI_KEY,),
        azure_keys: tuple[str, ...] = (AZURE_KEY,),
        azuread_tokens: tuple[str, ...] = (AZUREAD_TOKEN,),
        anthropic_keys: tuple[str, ...] = (ANTHROPIC_KEY,),
        cohere_keys: tuple[str, ...] = (COHERE_KEY,),
        gemini_keys: tuple[str, ...] = (GEMINI_KEY,),
    ) -> None:
        self.host = host
        self._port = port
        self.state = FakeState(
            Credentials(
                set(openai_keys),
                set(azure_keys),
                set(azuread_tokens),
                anthropic_keys=set(anthropic_keys),
                cohere_keys=set(cohere_keys),
                gemini_keys=set(gemini_keys),
                compatible_keys={
                    "groq": {self.GROQ_KEY},
                    "deepseek": {self.DEEPSEEK_KEY},
                    "xai": {self.XAI_KEY},
                    "openrouter": {self.OPENROUTER_KEY},
                    "togetherai": {self.TOGETHERAI_KEY},
                    "vllm": {self.VLLM_KEY},
                },
                mistral_keys={self.MISTRAL_KEY},
                databricks_tokens={self.DATABRICKS_TOKEN},
                hf_tokens={self.HF_TOKEN},
                ai21labs_keys={self.AI21LABS_KEY},
                mosaicml_keys={self.MOSAICML_KEY},
                aws_keys={
                    self.AWS_ACCESS_KEY_ID: (self.AWS_SECRET_ACCESS_KEY, None),
                    self.AWS_TEMP_ACCESS_KEY_ID: (self.AWS_TEMP_SECRET_ACCESS_KEY, self.AWS_SESSION_TOKEN),
                },
                bedrock_api_keys={self.BEDROCK_API_KEY},
                aws_roles={self.AWS_ROLE_ARN},
            )
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> FakeUpstream:
        """Start serving; returns once the port accepts connections."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self._serve())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-upstream", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake upstream did not start within 10 s")
        if failure:
            self._thread = None
            raise RuntimeError("fake upstream failed to start") from failure[0]
        return self

    async def _serve(self) -> None:
        # handler_cancellation: a client that gives up (a timeout test) cancels a sleeping handler.
        self._runner = web.AppRunner(
            build_app(self.state), handler_cancellation=True, shutdown_timeout=1.0, access_log=None
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._port)
        await site.start()
        self._port = self._runner.addresses[0][1]

    def stop(self) -> None:
        """Stop serving and join the thread. Idempotent."""
        loop, thread, runner = self._loop, self._thread, self._runner
        if loop is None or thread is None:
            return
        if runner is not None:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._loop = self._thread = self._runner = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------ addresses

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`: the Azure `openai_api_base`."""
        return f"http://{self.host}:{self._port}"

    @property
    def openai_base(self) -> str:
        """`http://127.0.0.1:<port>/v1`: the OpenAI `openai_api_base`."""
        return f"{self.url}/v1"

    @property
    def anthropic_base(self) -> str:
        """`http://127.0.0.1:<port>`: the Anthropic `anthropic_api_base` (the server root)."""
        return self.url

    @property
    def cohere_base(self) -> str:
        """`http://127.0.0.1:<port>`: the Cohere `cohere_api_base` (the server root)."""
        return self.url

    @property
    def gemini_base(self) -> str:
        """`http://127.0.0.1:<port>/v1beta`: the Gemini `gemini_api_base` (the API version root)."""
        return f"{self.url}/v1beta"

    def compatible_base(self, vendor: str) -> str:
        """The base URL (`api_base` / `togetherai_api_base`) of an OpenAI-compatible vendor's dialect:
        groq, deepseek, xai, openrouter, togetherai, ollama or vllm."""
        return f"{self.url}{openai_compatible_vendor.BY_NAME[vendor].prefix}"

    @property
    def mistral_base(self) -> str:
        """`http://127.0.0.1:<port>/mistral/v1`: the Mistral `mistral_api_base`."""
        return f"{self.url}{mistral_vendor.PREFIX}"

    @property
    def databricks_url(self) -> str:
        """`http://127.0.0.1:<port>`: the Databricks `databricks_workspace_url`."""
        return self.url

    @property
    def hf_server_url(self) -> str:
        """`http://127.0.0.1:<port>/tgi`: a plain TGI server's `hf_server_url` (no auth)."""
        return f"{self.url}{huggingface_vendor.OPEN_PREFIX}"

    @property
    def hf_endpoint_url(self) -> str:
        """`http://127.0.0.1:<port>/hf-endpoint`: a protected Inference Endpoint's `hf_server_url` (wants HF_TOKEN)."""
        return f"{self.url}{huggingface_vendor.ENDPOINT_PREFIX}"

    @property
    def ai21labs_base(self) -> str:
        """`http://127.0.0.1:<port>`: the AI21 `ai21labs_api_base` (the server root)."""
        return self.url

    @property
    def mosaicml_base(self) -> str:
        """`http://127.0.0.1:<port>/mosaicml`: the MosaicML `mosaicml_api_base`."""
        return f"{self.url}{mosaicml_vendor.PREFIX}"

    @property
    def bedrock_base(self) -> str:
        """`http://127.0.0.1:<port>`: the Amazon Bedrock `bedrock_api_base` (the runtime's root)."""
        return self.url

    @property
    def sts_url(self) -> str:
        """`http://127.0.0.1:<port>/aws-sts`: the fake STS, for `AWS_ENDPOINT_URL_STS`."""
        return f"{self.url}/aws-sts"

    def mlflow_serving_url(self, model: str) -> str:
        """The `model_server_url` of the fake MLflow scoring server serving `model`."""
        return f"{self.url}/mlflow/{model}"

    # ------------------------------------------------------------ inspection and control

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every vendor request received since the last reset, oldest first (a copy)."""
        return self.state.requests()

    @property
    def last_request(self) -> RecordedRequest:
        requests = self.state.requests()
        if not requests:
            raise AssertionError("the fake upstream received no request")
        return requests[-1]

    def add_fault(self, spec: str, times: int = 1) -> None:
        """Play fault `spec` (see `tests.fake_upstream.faults`) on the next `times` vendor requests."""
        Fault.parse(spec)
        self.state.add_fault(spec, times)

    def reset(self) -> None:
        """Forget recorded requests and queued faults."""
        self.state.reset()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the fake LLM upstream until SIGTERM/SIGINT.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    fake = FakeUpstream(host=args.host, port=args.port).start()
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    print(
        json.dumps(
            {
                "url": fake.url,
                "openai_key": fake.OPENAI_KEY,
                "azure_key": fake.AZURE_KEY,
                "azuread_token": fake.AZUREAD_TOKEN,
                "anthropic_key": fake.ANTHROPIC_KEY,
                "cohere_key": fake.COHERE_KEY,
                "gemini_key": fake.GEMINI_KEY,
                "groq_key": fake.GROQ_KEY,
                "deepseek_key": fake.DEEPSEEK_KEY,
                "xai_key": fake.XAI_KEY,
                "openrouter_key": fake.OPENROUTER_KEY,
                "togetherai_key": fake.TOGETHERAI_KEY,
                "vllm_key": fake.VLLM_KEY,
                "mistral_key": fake.MISTRAL_KEY,
                "databricks_token": fake.DATABRICKS_TOKEN,
                "hf_token": fake.HF_TOKEN,
                "ai21labs_key": fake.AI21LABS_KEY,
                "mosaicml_key": fake.MOSAICML_KEY,
                "aws_region": fake.AWS_REGION,
                "aws_access_key_id": fake.AWS_ACCESS_KEY_ID,
                "aws_secret_access_key": fake.AWS_SECRET_ACCESS_KEY,
                "bedrock_api_key": fake.BEDROCK_API_KEY,
            }
        ),
        flush=True,
    )
    try:
        stopped.wait()
    finally:
        fake.stop()


if __name__ == "__main__":
    main(sys.argv[1:])

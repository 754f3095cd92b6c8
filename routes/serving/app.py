"""The serving half: a lean Starlette app for the query hot path (no Django request cycle).

It owns start-up and shutdown (Django's ASGI handler has no lifespan): the pooled upstream client,
the route/key snapshot and its refresher, the usage recorder.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from providers.client import UpstreamClient
from usage.recorder import UsageRecorder

from .mlflow_gateway import MlflowGatewayFamily
from .orm import run_orm
from .pipeline import JSONResponse, ServingState, serve_query
from .snapshot import SnapshotHolder

MLFLOW_GATEWAY = MlflowGatewayFamily()


def _state(request: Request) -> ServingState:
    state: ServingState = request.app.state.serving
    return state


async def health(request: Request) -> Response:
    return JSONResponse({"status": "OK"})


async def mlflow_route_invocations(request: Request) -> Response:
    return await serve_query(_state(request), request, MLFLOW_GATEWAY, request.path_params["name"])


def build_state() -> ServingState:
    cfg: dict[str, Any] = settings.GATEWAY
    return ServingState(
        snapshot=SnapshotHolder(redis_url=settings.REDIS_URL, poll_seconds=cfg["SNAPSHOT_POLL_SECONDS"]),
        client=UpstreamClient(connect_timeout=cfg["UPSTREAM_CONNECT_TIMEOUT_SECONDS"]),
        recorder=UsageRecorder(run_sync=run_orm, flush_seconds=cfg["USAGE_FLUSH_SECONDS"]),
        max_body_bytes=cfg["MAX_BODY_BYTES"],
        upstream_timeout=cfg["UPSTREAM_TIMEOUT_SECONDS"],
    )


def build_serving_app() -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state = build_state()
        app.state.serving = state
        await state.snapshot.start()
        state.recorder.start()
        try:
            yield
        finally:
            await state.snapshot.stop()
            await state.recorder.stop()
            await state.client.aclose()

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/gateway/{name:str}/invocations", mlflow_route_invocations, methods=["POST"]),
            Mount("/static", StaticFiles(directory=str(settings.STATIC_ROOT), check_dir=False), name="static"),
        ],
        lifespan=lifespan,
    )

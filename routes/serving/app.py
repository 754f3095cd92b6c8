"""The serving half: a lean Starlette app for the query hot path (no Django request cycle).

It owns start-up and shutdown (Django's ASGI handler has no lifespan): the pooled upstream client,
the route/key snapshot and its refresher, the usage recorder.
"""

from __future__ import annotations

import contextlib
import gc
import random
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from providers.base import GatewayError, RouteType
from providers.client import UpstreamClient
from usage.recorder import usage_recorder_build
from usage.services import limiter_build

from ..errors import NotFound
from .deployments import DeploymentsFamily
from .dispatch import Defaults, Dispatcher
from .mlflow_gateway import MlflowGatewayFamily
from .openai_api import OpenAIFamily, model_object, models_visible, route_name_from_body
from .orm import run_orm
from .pipeline import JSONResponse, ServingState, authenticate, serve_query
from .snapshot import SnapshotHolder

MLFLOW_GATEWAY = MlflowGatewayFamily()
DEPLOYMENTS = DeploymentsFamily()
OPENAI = {rt: OpenAIFamily(rt) for rt in RouteType}


def _state(request: Request) -> ServingState:
    state: ServingState = request.app.state.serving
    return state


async def health(request: Request) -> Response:
    return JSONResponse({"status": "OK"})


async def mlflow_route_invocations(request: Request) -> Response:
    return await serve_query(_state(request), request, MLFLOW_GATEWAY, request.path_params["name"])


async def deployments_invocations(request: Request) -> Response:
    return await serve_query(_state(request), request, DEPLOYMENTS, request.path_params["name"])


def openai_endpoint(route_type: RouteType) -> Any:
    family = OPENAI[route_type]

    async def endpoint(request: Request) -> Response:
        return await serve_query(_state(request), request, family, route_name_from_body)

    return endpoint


async def openai_models(request: Request) -> Response:
    state = _state(request)
    try:
        principal = await authenticate(state, request)
        name = request.path_params.get("model")
        if name is None:
            return JSONResponse({"object": "list", "data": models_visible(state.snapshot.current, principal)})
        route = state.snapshot.current.routes.get(name)
        if route is None or not route.enabled or not route.allows(principal):
            raise NotFound(f"The model '{name}' does not exist or this key may not use it.")
        return JSONResponse(model_object(route))
    except GatewayError as exc:
        return JSONResponse(OPENAI[RouteType.CHAT].error_body(exc), status_code=exc.status)


async def not_found(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods under the serving prefixes answer in the family's error shape."""
    status = getattr(exc, "status_code", 404)
    error = GatewayError(f"No endpoint {request.method} {request.url.path}.", status=status,
                         code="ENDPOINT_NOT_FOUND" if status == 404 else "METHOD_NOT_ALLOWED")
    family = OPENAI[RouteType.CHAT] if request.url.path.startswith("/v1/") else MLFLOW_GATEWAY
    return JSONResponse(family.error_body(error), status_code=status)


def build_state() -> ServingState:
    cfg: dict[str, Any] = settings.GATEWAY
    client = UpstreamClient(connect_timeout=cfg["UPSTREAM_CONNECT_TIMEOUT_SECONDS"])
    defaults = Defaults(connect=cfg["UPSTREAM_CONNECT_TIMEOUT_SECONDS"], read=cfg["UPSTREAM_TIMEOUT_SECONDS"],
                        total=cfg["UPSTREAM_TIMEOUT_SECONDS"], stream_total=cfg["STREAM_TIMEOUT_SECONDS"])
    return ServingState(
        snapshot=SnapshotHolder(redis_url=settings.REDIS_URL, poll_seconds=cfg["SNAPSHOT_POLL_SECONDS"]),
        client=client,
        # The Redis stream with REDIS_URL, else batched database writes (the embedded demo).
        recorder=usage_recorder_build(run_sync=run_orm),
        max_body_bytes=cfg["MAX_BODY_BYTES"],
        limiter=limiter_build(),
        dispatcher=Dispatcher(client=client, defaults=defaults, rng=random.Random()),
    )


def build_serving_app() -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state = build_state()
        app.state.serving = state
        await state.snapshot.start()
        state.recorder.start()
        # Django, the providers and the snapshot are loaded: move them out of the collector's sight,
        # so full collections stop rescanning a heap that never changes (it lifted p99 in the prototype).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await state.snapshot.stop()
            await state.recorder.stop()
            await state.client.aclose()
            await state.limiter.aclose()

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/gateway/{name:str}/invocations", mlflow_route_invocations, methods=["POST"]),
            Route("/endpoints/{name:str}/invocations", deployments_invocations, methods=["POST"]),
            Route("/v1/chat/completions", openai_endpoint(RouteType.CHAT), methods=["POST"]),
            Route("/v1/completions", openai_endpoint(RouteType.COMPLETIONS), methods=["POST"]),
            Route("/v1/embeddings", openai_endpoint(RouteType.EMBEDDINGS), methods=["POST"]),
            Route("/v1/models", openai_models, methods=["GET"]),
            Route("/v1/models/{model:path}", openai_models, methods=["GET"]),
            Mount("/static", StaticFiles(directory=str(settings.STATIC_ROOT), check_dir=False), name="static"),
        ],
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: not_found},
    )

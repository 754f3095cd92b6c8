"""One query, whatever its API family: key → route → grant → body → provider → response → usage.

No ORM query here: keys and routes come from the snapshot, usage goes to the recorder's buffer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from providers.base import GatewayError, InvalidRequest, StdRequest, Usage
from providers.client import UpstreamClient
from usage.events import UsageEventData
from usage.recorder import UsageRecorder
from usage.services import RELEASE, Caller, Limiter, LimitExceeded, Reservation, limits_reserve, limits_settle

from ..errors import NotFound, PermissionDenied, Unauthenticated
from ..keys import hash_key, parse_bearer
from ..principal import Principal
from .dispatch import Dispatcher
from .family import Family
from .snapshot import RouteEntry, SnapshotHolder
from .streaming import OpenAIStreamRenderer, StreamTally, stream_body

logger = logging.getLogger(__name__)


class RequestTooLarge(GatewayError):
    status = 413
    code = "REQUEST_TOO_LARGE"


class RouteDisabled(GatewayError):
    status = 403
    code = "ROUTE_DISABLED"


@dataclass(slots=True)
class ServingState:
    snapshot: SnapshotHolder
    client: UpstreamClient
    recorder: UsageRecorder
    max_body_bytes: int
    limiter: Limiter
    dispatcher: Dispatcher


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


async def authenticate(state: ServingState, request: Request) -> Principal:
    key = parse_bearer(request.headers.get("authorization"))
    if key is None:
        raise Unauthenticated("Missing gateway key: send 'Authorization: Bearer <key>'.")
    key_hash = hash_key(key)
    principal = state.snapshot.current.principal(key_hash, datetime.now(UTC))
    if principal is None and await state.snapshot.refresh_on_miss():  # a key issued a moment ago
        principal = state.snapshot.current.principal(key_hash, datetime.now(UTC))
    if principal is None:
        raise Unauthenticated("Invalid, revoked or expired gateway key.")
    return principal


async def read_json_body(request: Request, limit: int) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"Request body is larger than the limit of {limit} bytes.")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"Request body is larger than the limit of {limit} bytes.")
        chunks.append(chunk)
    try:
        body = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError:
        raise InvalidRequest("Request body is not valid JSON.", code="MALFORMED_REQUEST") from None
    if not isinstance(body, dict):
        raise InvalidRequest("Request body must be a JSON object.", code="MALFORMED_REQUEST")
    return body


async def resolve_route(state: ServingState, principal: Principal, name: str) -> RouteEntry:
    route = state.snapshot.current.routes.get(name)
    if route is None and await state.snapshot.refresh_on_miss():  # a route created a moment ago
        route = state.snapshot.current.routes.get(name)
    if route is None:
        raise NotFound(f"Route '{name}' does not exist.")
    if not route.granted(principal):
        raise PermissionDenied(f"This key may not query route '{name}'.")
    if not route.allows(principal):
        raise PermissionDenied(
            f"Route '{name}' serves production consumers only; this key's consumer is in {principal.environment}."
        )
    if not route.enabled:
        raise RouteDisabled(f"Route '{name}' is disabled.")
    return route


_settling: set[asyncio.Task[None]] = set()


def settle_later(state: ServingState, reservation: Reservation | None, usage: Usage | None) -> None:
    """Settle a reservation from sync code running on the event loop (the stream's end callback)."""
    if reservation is None:
        return
    task = asyncio.get_running_loop().create_task(
        limits_settle(limiter=state.limiter, reservation=reservation, usage=usage)
    )
    _settling.add(task)
    task.add_done_callback(_settling.discard)


def count_usage(event: UsageEventData, usage: Usage) -> None:
    """The call's tokens onto its usage event (the vendor's total when it gave one)."""
    event.input_tokens = usage.input_tokens or 0
    event.output_tokens = usage.output_tokens or 0
    event.total_tokens = usage.total_tokens or event.input_tokens + event.output_tokens
    event.tokens_estimated = usage.estimated


async def open_stream(
    state: ServingState,
    family: Family,
    route: RouteEntry,
    std_request: StdRequest,
    renderer: OpenAIStreamRenderer,
    event: UsageEventData,
    started: float,
    reservation: Reservation | None = None,
) -> Response:
    """Start the vendor's stream (retrying and failing over until its first chunk); a failure before
    the first chunk raises (a plain error response)."""
    (first, chunks), served = await state.dispatcher.open_stream(
        state.snapshot.current, route, event.environment, std_request
    )
    event.provider, event.model = served.target.provider, served.target.model
    tally = StreamTally(request=std_request, started=started)

    def on_end(tally: StreamTally, error: GatewayError | None, abandoned: bool) -> None:
        usage = tally.usage()
        count_usage(event, usage)
        event.ttft_ms = tally.ttft_ms
        if error is not None:
            event.status_code, event.error_code = error.status, error.code
        elif abandoned:
            event.status_code, event.error_code = 499, "CLIENT_CLOSED_REQUEST"
        event.latency_ms = (time.perf_counter() - started) * 1000.0
        state.recorder.record(event)
        # Limits: settle to the tokens actually produced (counted from what was sent if the vendor
        # sent no usage), whether the stream finished, failed or the client went away.
        settle_later(state, reservation, RELEASE if error is not None and tally.first_chunk_at is None else usage)

    body = stream_body(first, chunks, tally=tally, renderer=renderer, error_body=family.error_body, on_end=on_end)
    return StreamingResponse(body, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def serve_query(
    state: ServingState,
    request: Request,
    family: Family,
    route_name: str | Callable[[dict[str, Any]], str],
) -> Response:
    """Run one query end to end and record it, whatever happens."""
    started = time.perf_counter()
    event = UsageEventData(
        request_id=os.urandom(16).hex(),
        created_at=datetime.now(UTC),
        api_family=family.name,
        status_code=200,
    )
    rate_headers: dict[str, str] = {}
    try:
        principal = await authenticate(state, request)
        event.consumer_id, event.consumer_name = principal.consumer_id, principal.consumer_name
        event.team_id, event.team_name = principal.team_id, principal.team_name
        event.api_key_id, event.environment = principal.key_id, principal.environment
        body = await read_json_body(request, state.max_body_bytes)
        name = route_name if isinstance(route_name, str) else route_name(body)
        event.route_name = name[:128]
        route = await resolve_route(state, principal, name)
        target = route.target_for(principal.environment)
        event.route_id, event.route_type = route.id, route.route_type.value
        event.provider, event.model = target.provider, target.model
        std_request = family.parse(route, body)
        renderer = family.stream_renderer(route, body)
        # Limits: every applicable one is checked and charged before the upstream is called (429 / 503).
        caller = Caller(route_id=route.id, route_name=route.name, consumer_id=principal.consumer_id,
                        consumer_name=principal.consumer_name, team_id=principal.team_id,
                        team_name=principal.team_name, provider=target.provider, model=target.model)
        reservation = await limits_reserve(limiter=state.limiter, table=state.snapshot.current.limits,
                                           caller=caller, request=std_request,
                                           route_max_tokens=route.default_max_tokens)
        rate_headers = reservation.headers if reservation is not None else {}
        try:
            if renderer is not None:
                event.stream = True
                streamed = await open_stream(state, family, route, std_request, renderer, event, started,
                                             reservation)
                streamed.headers["X-Request-Id"] = event.request_id
                streamed.headers.update(rate_headers)
                return streamed  # recorded (and the reservation settled) when the stream ends
            std_response, served = await state.dispatcher.call(
                state.snapshot.current, route, principal.environment, std_request
            )
            event.provider, event.model = served.target.provider, served.target.model  # who answered
        except Exception:
            await limits_settle(limiter=state.limiter, reservation=reservation, usage=RELEASE)
            raise
        except BaseException:
            # Cancelled mid-call (client abort, shutdown): what the vendor produced is unknown, and it
            # was asked, so the reservation stays charged whole.
            await limits_settle(limiter=state.limiter, reservation=reservation, usage=None)
            raise
        await limits_settle(limiter=state.limiter, reservation=reservation, usage=std_response.usage)
        count_usage(event, std_response.usage)
        response: Response = JSONResponse(family.render(route, body, std_response))
    except GatewayError as exc:
        event.status_code, event.error_code = exc.status, exc.code
        response = JSONResponse(family.error_body(exc), status_code=exc.status)
        if exc.retry_after is not None:
            response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        if isinstance(exc, LimitExceeded):
            rate_headers = exc.headers
    except Exception:
        logger.exception("unexpected error serving request %s", event.request_id)
        internal = GatewayError("Internal error; the request id identifies it in the gateway's log.")
        event.status_code, event.error_code = internal.status, internal.code
        response = JSONResponse(family.error_body(internal), status_code=internal.status)
    event.latency_ms = (time.perf_counter() - started) * 1000.0
    response.headers["X-Request-Id"] = event.request_id
    response.headers.update(rate_headers)
    state.recorder.record(event)
    return response

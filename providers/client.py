"""The pooled upstream HTTP client and `execute`, the one place where a provider call does I/O.

One `UpstreamClient` per process (the serving app's lifespan creates and closes it): an
`httpx.AsyncClient` over `httpx_aiohttp.AiohttpTransport`, i.e. httpx's API at aiohttp's speed.

Every transport failure becomes a `GatewayError` with a fixed message: exception texts name hosts
and URLs, which callers must not see, and some reprs show request headers, i.e. credentials. So the
original exception is not chained; a note (`__notes__`, shown in tracebacks) names its classes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import httpx
import httpx_aiohttp
import orjson

from providers.base import (
    GatewayError,
    InvalidRequest,
    Provider,
    StdRequest,
    StdResponse,
    Target,
    UpstreamBadResponse,
    UpstreamError,
    UpstreamRequest,
    UpstreamResponse,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from providers.streaming import StreamChunk

DEFAULT_TIMEOUT = 60.0  # seconds, the whole call: connect, send, wait, read
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_MAX_BODY = 32 * 1024 * 1024
USER_AGENT = "llm-governance-gateway"  # no LLM answer is this large; a bigger body is a fault


class UpstreamClient:
    """A pooled HTTP client for upstream calls. Create one per process and `aclose()` it at shutdown.

    `transport` is for tests only (e.g. `httpx.MockTransport`); production uses aiohttp's.
    """

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_connections: int = 200,
        max_keepalive_connections: int = 50,
        max_body_bytes: int = DEFAULT_MAX_BODY,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_keepalive_connections
        )
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_body_bytes = max_body_bytes
        self._http = httpx.AsyncClient(
            transport=transport or httpx_aiohttp.AiohttpTransport(limits=limits),
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            follow_redirects=False,
        )
        # No cookie jar: one process serves every consumer, so a cookie a vendor sets must never ride
        # along on someone else's call (and extracting them costs ~9% of a proxied call).
        self._http._cookies = _NoCookies()
        self._urls: dict[tuple[str, tuple[tuple[str, str], ...]], httpx.URL] = {}

    def _request(self, req: UpstreamRequest, content: bytes | None, headers: dict[str, str],
                 limits: httpx.Timeout) -> httpx.Request:
        """An httpx.Request built directly: the parsed URL is cached per route URL, and the client's
        merging of defaults (URL, headers, params, cookies: ~15% of a proxied call) is skipped."""
        key = (req.url, tuple(req.params.items()) if req.params else ())
        url = self._urls.get(key)
        if url is None:
            if len(self._urls) > 4096:
                self._urls.clear()
            url = self._urls[key] = httpx.URL(req.url, params=dict(req.params) if req.params else None)
        headers.setdefault("User-Agent", USER_AGENT)
        return httpx.Request(req.method, url, headers=headers, content=content,
                             extensions={"timeout": limits.as_dict()})

    # The per-call timeout is the API's contract (callers pass the route's budget), hence ASYNC109.
    async def send(
        self,
        req: UpstreamRequest,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
    ) -> UpstreamResponse:
        """Send `req` and read the whole answer within `timeout` seconds (default: the client's).

        `connect_timeout` (default: the client's) bounds connecting, `read_timeout` (default: none
        beyond `timeout`) each wait for data.

        Any status is returned as is. Raises `UpstreamTimeout` (504) when time runs out,
        `UpstreamUnavailable` (502) when the connection fails or closes early or the answer is not
        HTTP, `UpstreamBadResponse` (502) when the body exceeds `max_body_bytes`.
        """
        total = self.timeout if timeout is None else timeout
        content, headers = _encode_body(req)
        try:
            async with asyncio.timeout(total):
                return await self._exchange(req, content, headers, self._httpx_timeout(total, connect_timeout,
                                                                                        read_timeout))
        except GatewayError:
            raise
        except (TimeoutError, httpx.HTTPError, aiohttp.ClientError, OSError, ValueError) as exc:
            error = _transport_error(exc, total)
        # Raised outside the handler on purpose: transport exceptions can carry the request's headers
        # (aiohttp's RequestInfo repr shows them), so they must not ride along as __context__.
        raise error

    def _httpx_timeout(self, total: float, connect: float | None, read: float | None) -> httpx.Timeout:
        return httpx.Timeout(
            total,
            connect=min(connect or self.connect_timeout, total),
            read=min(read, total) if read else total,
        )

    async def _exchange(
        self, req: UpstreamRequest, content: bytes | None, headers: dict[str, str], limits: httpx.Timeout
    ) -> UpstreamResponse:
        response = await self._http.send(self._request(req, content, headers, limits), stream=True)
        try:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_body_bytes:
                    raise UpstreamBadResponse("The upstream provider's answer is too large.")
                chunks.append(chunk)
        finally:
            await response.aclose()
        return UpstreamResponse(status=response.status_code, headers=response.headers, body=b"".join(chunks))

    @contextlib.asynccontextmanager
    async def open_stream(
        self,
        req: UpstreamRequest,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        idle_timeout: float | None = None,
        connect_timeout: float | None = None,
    ) -> AsyncIterator[UpstreamStream]:
        """Send `req` and hand over the answer as it arrives; leaving the block closes the connection.

        `timeout` bounds the whole exchange, `idle_timeout` (default: `timeout`) the wait for each
        piece, including the first. Errors map as for `send()`.
        """
        total = self.timeout if timeout is None else timeout
        deadline = asyncio.get_running_loop().time() + total
        content, headers = _encode_body(req)
        request = self._request(req, content, headers, self._httpx_timeout(total, connect_timeout, idle_timeout))
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._http.send(request, stream=True)
        except GatewayError:
            raise
        except (TimeoutError, httpx.HTTPError, aiohttp.ClientError, OSError, ValueError) as exc:
            error = _transport_error(exc, total)
        else:
            try:
                yield UpstreamStream(response, deadline=deadline, idle=idle_timeout or total, total=total,
                                     max_body_bytes=self.max_body_bytes)
            finally:
                await response.aclose()
            return
        raise error

    async def aclose(self) -> None:
        """Close the pool. The client cannot be used afterwards."""
        await self._http.aclose()

    async def __aenter__(self) -> UpstreamClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def execute(
    provider: Provider,
    target: Target,
    request: StdRequest,
    *,
    client: UpstreamClient | None,
    timeout: float | None = None,  # noqa: ASYNC109 - see UpstreamClient.send
    connect_timeout: float | None = None,
    read_timeout: float | None = None,
) -> StdResponse:
    """Answer `request` through `provider` for `target`: the standard response, or a GatewayError.

    Local providers (`needs_network = False`) answer without I/O and need no client. Otherwise a
    non-2xx answer raises `provider.map_error(...)`; a 2xx body that cannot be parsed raises
    `UpstreamBadResponse`.
    """
    if not provider.needs_network:
        return provider.answer_locally(target, request)
    if client is None:
        raise RuntimeError(f"Provider '{provider.name}' needs an UpstreamClient.")
    upstream_request = provider.build_request(target, request)
    response = await client.send(upstream_request, timeout=timeout, connect_timeout=connect_timeout,
                                 read_timeout=read_timeout)
    if not 200 <= response.status < 300:
        raise _mapped_error(provider, target, response)
    try:
        return provider.parse_response(target, request, response)
    except GatewayError:
        raise
    except Exception as exc:
        raise UpstreamBadResponse(
            "The upstream provider answered with a body the gateway cannot read."
        ) from exc


class _NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class UpstreamStream:
    """An upstream answer being received: status and headers now, the body piece by piece."""

    def __init__(self, response: httpx.Response, *, deadline: float, idle: float, total: float,
                 max_body_bytes: int) -> None:
        self._response = response
        self._deadline = deadline
        self._idle = idle
        self._total = total
        self._max_body_bytes = max_body_bytes
        self.status = response.status_code
        self.headers = response.headers

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        pieces = self._response.aiter_bytes()
        loop = asyncio.get_running_loop()
        while True:
            try:
                async with asyncio.timeout_at(min(self._deadline, loop.time() + self._idle)):
                    piece = await anext(pieces)
            except StopAsyncIteration:
                return
            except GatewayError:
                raise
            except (TimeoutError, httpx.HTTPError, aiohttp.ClientError, OSError, ValueError) as exc:
                error = _transport_error(exc, self._total)
            else:
                if piece:
                    yield piece
                continue
            raise error

    async def read(self) -> UpstreamResponse:
        """The rest of the body at once (for error answers), capped like `send()`."""
        chunks: list[bytes] = []
        size = 0
        async for piece in self.iter_bytes():
            size += len(piece)
            if size > self._max_body_bytes:
                raise UpstreamBadResponse("The upstream provider's answer is too large.")
            chunks.append(piece)
        return UpstreamResponse(status=self.status, headers=self.headers, body=b"".join(chunks))


async def execute_stream(
    provider: Provider,
    target: Target,
    request: StdRequest,
    *,
    client: UpstreamClient | None,
    timeout: float | None = None,  # noqa: ASYNC109
    idle_timeout: float | None = None,
    connect_timeout: float | None = None,
) -> AsyncIterator[StreamChunk]:
    """Stream `request` through `provider`: standard chunks as the vendor sends them.

    A non-2xx answer raises `provider.map_error(...)` before any chunk; a transport failure or a
    vendor error event mid-stream raises a GatewayError from the iteration. Closing the iterator
    early closes the upstream connection at once.
    """
    if not provider.supports_streaming:
        raise InvalidRequest(f"Provider '{provider.name}' does not stream.")
    if not provider.needs_network:
        for chunk in provider.stream_locally(target, request):
            yield chunk
            await asyncio.sleep(0)
        return
    if client is None:
        raise RuntimeError(f"Provider '{provider.name}' needs an UpstreamClient.")
    upstream_request = provider.build_stream_request(target, request)
    async with client.open_stream(
        upstream_request, timeout=timeout, idle_timeout=idle_timeout, connect_timeout=connect_timeout
    ) as upstream:
        if not 200 <= upstream.status < 300:
            raise _mapped_error(provider, target, await upstream.read())
        parser = provider.stream_parser(target, request)
        try:
            async for piece in upstream.iter_bytes():
                for chunk in parser.feed(piece):
                    yield chunk
            for chunk in parser.close():
                yield chunk
        except GatewayError:
            raise
        except Exception as exc:
            raise UpstreamBadResponse("The upstream provider sent a stream the gateway cannot read.") from exc


def _mapped_error(provider: Provider, target: Target, response: UpstreamResponse) -> GatewayError:
    try:
        return provider.map_error(target, response)
    except Exception:
        # A bug in an error mapper must not turn a vendor error into a 500 with a stack trace.
        return UpstreamError(f"The upstream provider answered with HTTP {response.status}.")


def _encode_body(req: UpstreamRequest) -> tuple[bytes | None, dict[str, str]]:
    headers = dict(req.headers)
    if req.json is None:
        return None, headers
    if not any(name.lower() == "content-type" for name in headers):
        headers["Content-Type"] = "application/json"
    return orjson.dumps(req.json), headers


def _transport_error(exc: BaseException, total: float) -> UpstreamError:
    error: UpstreamError
    if _is_timeout(exc):
        error = UpstreamTimeout(f"The upstream provider did not answer within {total:g} s.")
    else:
        error = UpstreamUnavailable(
            "The upstream provider could not be reached or closed the connection before a complete answer."
        )
    # For logs: the exception classes only, never their texts (URLs) or reprs (headers).
    error.add_note("transport failure: " + " <- ".join(type(e).__name__ for e in _cause_chain(exc)))
    return error


def _cause_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__
    return chain


def _is_timeout(exc: BaseException) -> bool:
    """True if `exc` stems from a timeout.

    httpx_aiohttp maps every `aiohttp.ClientConnectionError` (refused connection, server
    disconnected) to `httpx.ConnectTimeout`, so the httpx class alone cannot be trusted: look at
    the aiohttp exception it wraps.
    """
    chain = _cause_chain(exc)
    if any(isinstance(e, TimeoutError) for e in chain):
        return True
    if any(isinstance(e, aiohttp.ClientError) for e in chain):
        return False
    return isinstance(exc, httpx.TimeoutException)


__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "UpstreamClient",
    "UpstreamStream",
    "execute",
    "execute_stream",
]

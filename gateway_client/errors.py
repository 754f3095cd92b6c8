"""Typed errors raised by :mod:`gateway_client`.

Every error the server answers becomes a :class:`GatewayClientError` (or a subclass chosen by
HTTP status) carrying ``status``, ``error_code`` and ``message``. Transport failures (connection
refused, timeout) are :class:`GatewayConnectionError` with ``status=None``; a missing gateway URI
is :class:`GatewayConfigError`.
"""

from __future__ import annotations

from typing import Any


class GatewayClientError(Exception):
    """An error answered by the gateway (``status`` set) or met on the way (``status`` None)."""

    def __init__(
        self,
        status: int | None,
        error_code: str | None,
        message: str,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        url: str | None = None,
        method: str | None = None,
    ) -> None:
        self.status = status
        self.error_code = error_code
        self.message = message
        self.body = body
        self.headers = headers or {}
        self.url = url
        self.method = method
        super().__init__(status, error_code, message)

    def __str__(self) -> str:
        where = f" ({self.method} {self.url})" if self.method and self.url else ""
        if self.status is None:
            return f"{self.message}{where}"
        code = f" {self.error_code}" if self.error_code else ""
        return f"HTTP {self.status}{code}: {self.message}{where}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, "
            f"error_code={self.error_code!r}, message={self.message!r})"
        )


class GatewayConfigError(GatewayClientError, ValueError):
    """The client is not configured (no gateway URI, a malformed URI, bad arguments)."""

    def __init__(self, message: str) -> None:
        super().__init__(None, "CLIENT_CONFIGURATION_ERROR", message)


class GatewayConnectionError(GatewayClientError):
    """The request did not get an answer (connection refused, DNS, timeout, broken response)."""


class GatewayTimeoutError(GatewayConnectionError):
    """The client gave up waiting for the answer (``timeout`` seconds)."""


class BadRequestError(GatewayClientError):
    """400: the request body or parameters are invalid."""


class AuthenticationError(GatewayClientError):
    """401: no gateway key, or an invalid/revoked one."""


class PermissionDeniedError(GatewayClientError):
    """403: the key is valid but may not use this route or operation (e.g. admin-only)."""


class NotFoundError(GatewayClientError):
    """404: unknown route (or unknown API path)."""


class ConflictError(GatewayClientError):
    """409: e.g. a route with that name already exists."""


class PayloadTooLargeError(GatewayClientError):
    """413: the request body is larger than the gateway accepts."""


class RateLimitError(GatewayClientError):
    """429: a request, token or budget limit was hit. ``retry_after`` is in seconds, if sent."""

    @property
    def retry_after(self) -> float | None:
        value = self.headers.get("retry-after")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None


class UpstreamError(GatewayClientError):
    """5xx: the provider failed (502), timed out (504), or the gateway could not serve (500/503)."""


_BY_STATUS: dict[int, type[GatewayClientError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    429: RateLimitError,
}


def error_class_for_status(status: int) -> type[GatewayClientError]:
    """The exception class used for an HTTP error ``status``."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return UpstreamError
    return GatewayClientError

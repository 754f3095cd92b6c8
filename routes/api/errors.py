"""One exception handler: every management API error in MLflow's shape `{"error_code", "message"}`."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response

from providers.base import GatewayError

_DRF_CODES: list[tuple[type[exceptions.APIException], str]] = [
    (exceptions.ParseError, "MALFORMED_REQUEST"),
    (exceptions.NotAuthenticated, "UNAUTHENTICATED"),
    (exceptions.AuthenticationFailed, "UNAUTHENTICATED"),
    (exceptions.PermissionDenied, "PERMISSION_DENIED"),
    (exceptions.NotFound, "RESOURCE_DOES_NOT_EXIST"),
    (exceptions.MethodNotAllowed, "METHOD_NOT_ALLOWED"),
    (exceptions.UnsupportedMediaType, "BAD_REQUEST"),
    (exceptions.Throttled, "REQUEST_LIMIT_EXCEEDED"),
    (exceptions.ValidationError, "INVALID_PARAMETER_VALUE"),
]


def _flatten(detail: Any, prefix: str = "") -> list[str]:
    if isinstance(detail, dict):
        out: list[str] = []
        for key, value in detail.items():
            name = key if key != "non_field_errors" else ""
            out += _flatten(value, f"{prefix}{name}: " if name else prefix)
        return out
    if isinstance(detail, list):
        return [m for item in detail for m in _flatten(item, prefix)]
    return [f"{prefix}{detail}"]


def error_response(status_code: int, code: str, message: str) -> Response:
    return Response({"error_code": code, "message": message}, status=status_code)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, GatewayError):
        response = error_response(exc.status, exc.code, exc.message)
        if exc.retry_after is not None:
            response["Retry-After"] = str(max(1, round(exc.retry_after)))
        return response
    if isinstance(exc, Http404):
        return error_response(status.HTTP_404_NOT_FOUND, "RESOURCE_DOES_NOT_EXIST", str(exc) or "Not found.")
    if isinstance(exc, exceptions.APIException):
        code = next((c for cls, c in _DRF_CODES if isinstance(exc, cls)), "BAD_REQUEST")
        message = "; ".join(_flatten(exc.detail))
        response = error_response(exc.status_code, code, message)
        if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
            response.status_code = status.HTTP_401_UNAUTHORIZED
            response["WWW-Authenticate"] = 'Bearer realm="gateway"'
        wait = getattr(exc, "wait", None)
        if wait:
            response["Retry-After"] = str(int(wait))
        return response
    return None  # a bug: Django's 500 handler (no stack trace to the client with DEBUG off)

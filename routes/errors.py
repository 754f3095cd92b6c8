"""The application error every service raises. Re-exported from providers so both halves share it."""

from providers.base import GatewayError, InvalidRequest

__all__ = [
    "AlreadyExists",
    "GatewayError",
    "InvalidRequest",
    "NotFound",
    "PermissionDenied",
    "Unauthenticated",
]


class Unauthenticated(GatewayError):
    status = 401
    code = "UNAUTHENTICATED"


class PermissionDenied(GatewayError):
    status = 403
    code = "PERMISSION_DENIED"


class NotFound(GatewayError):
    status = 404
    code = "RESOURCE_DOES_NOT_EXIST"


class AlreadyExists(GatewayError):
    status = 409
    code = "RESOURCE_ALREADY_EXISTS"

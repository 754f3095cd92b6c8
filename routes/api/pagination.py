"""Keyset pagination by route name with an opaque `page_token`, as MLflow's clients expect."""

from __future__ import annotations

import base64
import binascii

import orjson
from django.db.models import QuerySet

from ..errors import InvalidRequest
from ..models import Route


def encode_token(after: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"after": after})).decode()


def decode_token(token: str) -> str:
    try:
        after = orjson.loads(base64.urlsafe_b64decode(token.encode()))["after"]
    except (binascii.Error, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise InvalidRequest("Invalid page_token.") from None
    if not isinstance(after, str):
        raise InvalidRequest("Invalid page_token.")
    return after


def paginate_routes(
    routes: QuerySet[Route], *, page_token: str | None, page_size: int
) -> tuple[list[Route], str | None]:
    routes = routes.order_by("name")
    if page_token:
        routes = routes.filter(name__gt=decode_token(page_token))
    page = list(routes[: page_size + 1])
    if len(page) > page_size:
        page = page[:page_size]
        return page, encode_token(page[-1].name)
    return page, None

"""One ASGI application: the serving prefixes go to the Starlette app, everything else to Django.

`uvicorn gatewaysite.asgi:application` serves the admin, the management API and the query hot path.
Lifespan events go to the Starlette half, which owns the pooled client, snapshot and recorder.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gatewaysite.settings")

from django.core.asgi import get_asgi_application

django_app = get_asgi_application()  # sets Django up before the serving half imports models

from routes.serving.app import build_serving_app  # noqa: E402

serving_app = build_serving_app()

SERVING_PREFIXES = ("/gateway/", "/endpoints/", "/v1/", "/static/")
SERVING_PATHS = frozenset({"/health"})


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await serving_app(scope, receive, send)
        return
    path: str = scope.get("path", "")
    if path in SERVING_PATHS or path.startswith(SERVING_PREFIXES):
        await serving_app(scope, receive, send)
    else:
        await django_app(scope, receive, send)

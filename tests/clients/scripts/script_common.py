"""Helpers both client scripts share. The scripts run in their own venvs (MLflow 2.x and 3.x cannot
share one), with this folder first on sys.path, so this module needs nothing but the stdlib and
`requests` (which both MLflow clients bring)."""

from __future__ import annotations

import json
import os
from typing import Any

import requests


def dump(model: Any) -> Any:
    if hasattr(model, "model_dump"):
        return model.model_dump(mode="json")
    return json.loads(model.json())  # pydantic v1


def http_error(exc: BaseException) -> dict[str, Any]:
    """Status and body of the requests.HTTPError MLflow raises for a non-2xx answer."""
    if not isinstance(exc, requests.exceptions.HTTPError) or exc.response is None:
        raise AssertionError(f"expected requests.HTTPError, got {type(exc).__name__}: {exc}")
    resp = exc.response
    try:
        body: Any = resp.json()
    except ValueError:
        body = resp.text
    return {
        "status": resp.status_code,
        "body": body,
        # DESIGN: MLflow paths answer {"error_code": "...", "message": "..."} (recorded, the
        # clients themselves never parse error bodies)
        "mlflow_error_shape": isinstance(body, dict)
        and isinstance(body.get("error_code"), str)
        and isinstance(body.get("message"), str),
        "message": str(exc)[:500],
    }


def expect_http_error(fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    try:
        value = fn(*args, **kwargs)
    except requests.exceptions.HTTPError as exc:
        return http_error(exc)
    raise AssertionError(f"{getattr(fn, '__name__', fn)} did not raise; returned {value!r:.300}")


class Env:
    """Temporarily set/unset environment variables (the clients re-read them on every call)."""

    def __init__(self, **values: str | None) -> None:
        self.values = values
        self.saved: dict[str, str | None] = {}

    def __enter__(self) -> None:
        for k, v in self.values.items():
            self.saved[k] = os.environ.get(k)
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    def __exit__(self, *exc: object) -> None:
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

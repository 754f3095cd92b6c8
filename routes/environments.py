"""Which credential a consumer's call uses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


def for_environment(by_environment: Mapping[str, T], environment: str) -> T | None:
    """The environment's own credential; a route with only one credential serves everyone with it."""
    found = by_environment.get(environment)
    if found is None and len(by_environment) == 1:
        found = next(iter(by_environment.values()))
    return found

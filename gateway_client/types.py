"""Small response types with attribute access, shaped like MLflow 2.x's ``Route`` & co.

Each keeps the server's full JSON in ``raw`` (fields this client does not know about included),
and ``to_dict()`` gives a plain dict back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import quote

T = TypeVar("T")


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class RouteModelInfo:
    name: str | None
    provider: str

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RouteModelInfo:
        data = data or {}
        return cls(name=_str_or_none(data.get("name")), provider=str(data.get("provider") or ""))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "provider": self.provider}


@dataclass(frozen=True)
class Limit:
    """A limit: MLflow's ``calls`` per ``renewal_period`` per ``key``, extended with ``tokens`` and
    ``usd`` (a Decimal) caps and the ``scope``. In a consumer's view, ``used`` and ``remaining``
    (dicts of calls / tokens / usd) and ``reset_at`` (ISO 8601, UTC) say where the consumer stands."""

    calls: int | None
    renewal_period: str | None
    key: str | None = None
    tokens: int | None = None
    usd: Decimal | None = None
    scope: str | None = None
    used: dict[str, Any] | None = None
    remaining: dict[str, Any] | None = None
    reset_at: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Limit:
        calls, tokens, usd = data.get("calls"), data.get("tokens"), data.get("usd")
        return cls(
            calls=int(calls) if calls is not None else None,
            renewal_period=_str_or_none(data.get("renewal_period")),
            key=_str_or_none(data.get("key")),
            tokens=int(tokens) if tokens is not None else None,
            usd=Decimal(str(usd)) if usd is not None else None,
            scope=_str_or_none(data.get("scope")),
            used=data.get("used") if isinstance(data.get("used"), dict) else None,
            remaining=data.get("remaining") if isinstance(data.get("remaining"), dict) else None,
            reset_at=_str_or_none(data.get("reset_at")),
            raw=dict(data),
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(self.raw) or {
            "calls": self.calls,
            "renewal_period": self.renewal_period,
            "key": self.key,
        }


@dataclass(frozen=True)
class LimitsConfig:
    """A route's limits. The server answers limits that cap calls in ``limits`` (what MLflow's client
    reads) and token/money-only ones in ``budgets``; here ``limits`` holds both."""

    route: str | None
    limits: list[Limit]
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], route: str | None = None) -> LimitsConfig:
        entries = [*(data.get("limits") or []), *(data.get("budgets") or [])]
        return cls(
            route=_str_or_none(data.get("route", route)),
            limits=[Limit.from_dict(x) for x in entries],
            raw=dict(data),
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(self.raw)


@dataclass(frozen=True)
class Route:
    """A gateway route: ``{name, route_type, model: {name, provider}, route_url, limit}``."""

    name: str
    route_type: str
    model: RouteModelInfo
    route_url: str
    limit: Limit | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Route:
        name = str(data.get("name") or "")
        limit = data.get("limit")
        return cls(
            name=name,
            route_type=str(data.get("route_type") or data.get("endpoint_type") or ""),
            model=RouteModelInfo.from_dict(data.get("model")),
            route_url=str(data.get("route_url") or f"/gateway/{quote(name, safe='')}/invocations"),
            limit=Limit.from_dict(limit) if isinstance(limit, dict) else None,
            raw=dict(data),
        )

    def to_dict(self) -> dict[str, Any]:
        """The server's JSON for this route (or the known fields if it was built by hand)."""
        return dict(self.raw) or {
            "name": self.name,
            "route_type": self.route_type,
            "model": self.model.to_dict(),
            "route_url": self.route_url,
            "limit": self.limit.to_dict() if self.limit else None,
        }


class PagedList(list[T]):
    """One page of results; ``token`` (alias ``next_page_token``) fetches the next, None at the end.

    Same shape as MLflow's ``PagedList`` returned by ``MlflowGatewayClient.search_routes``.
    """

    def __init__(self, items: list[T], token: str | None) -> None:
        super().__init__(items)
        self.token = token

    @property
    def next_page_token(self) -> str | None:
        return self.token

    def to_list(self) -> list[T]:
        return list(self)


def _money(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    if isinstance(out.get("cost_usd"), str):
        out["cost_usd"] = Decimal(out["cost_usd"])
    return out


@dataclass(frozen=True)
class UsageReport:
    """A usage report: ``rows`` (group fields + calls, errors, input/output/total tokens, cost_usd)
    and ``totals``; ``cost_usd`` is a Decimal (the server sends a decimal string)."""

    rows: list[dict[str, Any]]
    totals: dict[str, Any]
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UsageReport:
        return cls(
            rows=[_money(r) for r in data.get("rows") or []],
            totals=_money(data.get("totals") or {}),
            raw=dict(data),
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(self.raw)

"""The usage event as plain data: what the serving half hands to the recorder for every call.

It crosses a process boundary on the Redis stream, so it has a wire form (`wire_dict`, `to_wire`,
`events_to_wire` for a batch; `from_wire_dict`, `from_wire` back): versioned JSON where money travels
as decimal strings (never floats) and unknown fields are ignored, so a drain worker and serving
processes of neighbouring releases understand each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson

WIRE_VERSION = 1

_DECIMAL_FIELDS = ("input_price_per_mtok", "output_price_per_mtok", "cost_usd")


@dataclass(slots=True)
class UsageEventData:
    request_id: str
    created_at: datetime
    api_family: str
    status_code: int
    error_code: str = ""
    route_id: int | None = None
    route_name: str = ""
    route_type: str = ""
    # The target that served the call (the provider and model actually called).
    provider: str = ""
    model: str = ""
    consumer_id: int | None = None
    consumer_name: str = ""
    team_id: int | None = None
    team_name: str = ""
    api_key_id: int | None = None
    environment: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    tokens_estimated: bool = False
    latency_ms: float = 0.0
    stream: bool = False
    # Time to first token of a streamed answer (None for a non-streamed call).
    ttft_ms: float | None = None
    # Set by the recorder from the price table (usage.pricing) at record time: the price in effect at
    # `created_at` (None when no price is known) and the cost, which is Decimal("0") without a price.
    # cost_usd None means "not priced yet"; whoever writes the event prices it then.
    price_id: int | None = None
    input_price_per_mtok: Decimal | None = None
    output_price_per_mtok: Decimal | None = None
    cost_usd: Decimal | None = None

    def as_dict(self) -> dict[str, Any]:
        # A flat shallow copy: dataclasses.asdict deep-copies every value, ~20x slower for no gain here.
        return {name: getattr(self, name) for name in _FIELD_NAMES}

    def wire_dict(self) -> dict[str, Any]:
        """The event as JSON-ready data (decimals as strings; orjson writes datetimes as ISO 8601)."""
        data = self.as_dict()
        for name in _DECIMAL_FIELDS:
            if data[name] is not None:
                data[name] = str(data[name])
        data["v"] = WIRE_VERSION
        return data

    def to_wire(self) -> bytes:
        """The event as compact JSON (one stream entry's `e` field)."""
        return orjson.dumps(self.wire_dict())

    @classmethod
    def from_wire_dict(cls, data: Any) -> UsageEventData:
        """Parse `wire_dict` output; ValueError (with the reason) if it is not a usable event."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        kwargs = {k: v for k, v in data.items() if k in _FIELD_NAMES}
        try:
            kwargs["created_at"] = datetime.fromisoformat(kwargs["created_at"])
            for name in _DECIMAL_FIELDS:
                if kwargs.get(name) is not None:
                    kwargs[name] = Decimal(str(kwargs[name]))
            event = cls(**kwargs)
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise ValueError(f"not a usage event: {exc!r}") from None
        if not event.request_id or not isinstance(event.request_id, str) or event.created_at.tzinfo is None:
            raise ValueError("a usage event needs a request_id and an aware created_at")
        return event

    @classmethod
    def from_wire(cls, raw: bytes | str) -> UsageEventData:
        """Parse `to_wire` output; ValueError (with the reason) if it is not a usable event."""
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        return cls.from_wire_dict(data)


def events_to_wire(events: Sequence[UsageEventData]) -> bytes:
    """Several events as one JSON array (one stream entry's `b` field: one XADD for a whole batch)."""
    return orjson.dumps([e.wire_dict() for e in events])


_FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(UsageEventData))

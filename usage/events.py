"""The usage event as plain data: what the serving half hands to the recorder for every call."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

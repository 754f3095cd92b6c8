"""Who is calling: what a gateway key resolves to, for both the serving half and the management API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: int
    key_prefix: str
    consumer_id: int
    consumer_name: str
    consumer_kind: str
    team_id: int
    team_name: str
    environment: str
    is_admin: bool
    expires_at: datetime | None = None

    # DRF treats request.user as a user object.
    @property
    def is_authenticated(self) -> bool:
        return True


PRODUCTION = "production"


def may_query(principal: Principal, *, granted_team_ids: frozenset[int] | set[int],
              granted_consumer_ids: frozenset[int] | set[int], production_only: bool = False) -> bool:
    """An admin key may query every route; any other key only routes granted to it or its team.

    A production-only route is closed to every consumer outside production, admin keys included.
    """
    if production_only and principal.environment != PRODUCTION:
        return False
    return (
        principal.is_admin
        or principal.consumer_id in granted_consumer_ids
        or principal.team_id in granted_team_ids
    )

"""What the serving half may call in usage: recording usage (limits arrive with the governance work)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from django.db import transaction

from .events import UsageEventData
from .models import UsageEvent

logger = logging.getLogger(__name__)


def usage_events_write(*, events: Sequence[UsageEventData]) -> int:
    """Insert a batch of usage events (idempotent by request id) and stamp the keys' last use."""
    if not events:
        return 0
    from routes.models import ApiKey  # usage depends on routes' models, never on their services

    rows = [UsageEvent(**e.as_dict()) for e in events]
    with transaction.atomic():
        UsageEvent.objects.bulk_create(rows, ignore_conflicts=True, batch_size=500)
    last_used: dict[int, datetime] = {}
    for e in events:
        if e.api_key_id is not None and (e.api_key_id not in last_used or e.created_at > last_used[e.api_key_id]):
            last_used[e.api_key_id] = e.created_at
    for key_id, when in last_used.items():
        # One autocommitted statement each (no lock held across tables), and a queryset update
        # fires no signals, so stamping last use never reloads the serving snapshots.
        ApiKey.objects.filter(pk=key_id).exclude(last_used_at__gt=when).update(last_used_at=when)
    return len(rows)

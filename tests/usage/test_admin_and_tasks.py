"""The usage admin (read-only events and roll-ups, CSV export actions, prices) and the Celery wiring
(tasks registered under the names beat's schedule uses; the roll-up and retention tasks)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from usage.models import UsageDaily, UsageEvent
from usage.rollup import usage_rollup
from usage.services import usage_events_write

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client: Client, django_user_model: Any) -> Client:
    user = django_user_model.objects.create(username="root", is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


@pytest.fixture
def events(make_event) -> list[Any]:
    made = [make_event(team_name="search", route_name="chat", provider="openai", model="gpt-4o-mini",
                       input_tokens=100 * i, output_tokens=10, total_tokens=100 * i + 10,
                       cost_usd=Decimal("0.0000150000") * i, input_price_per_mtok=Decimal("0.15"),
                       output_price_per_mtok=Decimal("0.6"), created_at=datetime(2025, 6, 1, 9, i, tzinfo=UTC))
            for i in range(1, 6)]
    usage_events_write(events=made)
    return made


def test_events_export_as_csv_from_the_admin(admin_client, events) -> None:
    ids = list(UsageEvent.objects.values_list("id", flat=True))
    response = admin_client.post("/admin/usage/usageevent/", {"action": "export_csv", "_selected_action": ids})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv") and "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == 5 and {r["request_id"] for r in rows} == {e.request_id for e in events}
    assert sum(Decimal(r["cost_usd"]) for r in rows) == Decimal("0.0002250000")
    # Read-only: no add form, and a change page offers no save.
    assert admin_client.get("/admin/usage/usageevent/add/").status_code == 403


def test_daily_usage_exports_as_a_cost_report(admin_client, events) -> None:
    usage_rollup()
    ids = list(UsageDaily.objects.values_list("id", flat=True))
    response = admin_client.post("/admin/usage/usagedaily/", {"action": "export_csv", "_selected_action": ids})
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["team_name"], r["calls"], r["cost_usd"]) for r in rows] == [("search", "5", "0.0002250000")]


def test_model_prices_are_edited_in_the_admin(admin_client) -> None:
    response = admin_client.post("/admin/usage/modelprice/add/", {
        "provider": "openai", "model": "gpt-9", "input_per_mtok": "1.5", "output_per_mtok": "6",
        "effective_from_0": "2026-01-01", "effective_from_1": "00:00:00", "source": "test",
    })
    assert response.status_code == 302, response.content[:2000]
    assert admin_client.get("/admin/usage/modelprice/?q=gpt-9").content.count(b"gpt-9") >= 1


def test_beat_schedules_registered_tasks_and_they_run(events) -> None:
    from gatewaysite.celery import app
    from usage.tasks import drain_usage_stream, prune_usage_events, rollup_usage

    app.loader.import_default_modules()
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert scheduled == {"usage.drain_stream", "usage.rollup", "usage.prune"} and scheduled <= set(app.tasks)
    assert rollup_usage.run() == 5
    assert UsageDaily.objects.get().calls == 5
    assert prune_usage_events.run() == 5  # June 2025 is past the retention: raw events go, aggregates stay
    assert UsageDaily.objects.get().calls == 5
    if not settings.REDIS_URL:
        assert drain_usage_stream.run() == {"written": 0}  # nothing to drain without Redis

"""The dashboards in a real headless browser (Debian's chromium driven by Playwright) on the real server:
log in with Django auth, see the team page, check that every chart is drawn (with its bars' colour on
screen), and the org page for staff. `UPDATE_DOCS_SCREENSHOT=1` also writes docs/dashboard.png (the
README's screenshot)."""

from __future__ import annotations

import io
import os
import random
import shutil
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from PIL import Image

from usage.events import UsageEventData
from usage.limits.models import Limit
from usage.models import TeamMembership
from usage.pricing import Price, cost_usd
from usage.services import usage_events_write

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"
BAR_BLUE = (0x25, 0x63, 0xEB)  # charts.PALETTE[0], the daily cost bars
PASSWORD = "correct horse battery staple"

MODELS = [("openai", "gpt-4o-mini", Price(Decimal("0.15"), Decimal("0.60"))),
          ("openai", "gpt-4o", Price(Decimal("2.50"), Decimal("10.00"))),
          ("anthropic", "claude-3-5-haiku-20241022", Price(Decimal("0.80"), Decimal("4.00")))]


@pytest.fixture
def chromium() -> str:
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")
    return CHROMIUM


@pytest.fixture
def month_of_usage(make_caller) -> dict[str, Any]:
    """Thirty days of calls for team 'search' (three consumers, routes and models) and a little for 'ads'."""
    rng = random.Random(6)
    search = [make_caller(team="search", consumer=name) for name in ("ranker", "indexer", "alice")]
    ads = make_caller(team="ads", consumer="bidder")
    now = timezone.now()
    events = []
    for day in range(30):
        for _ in range(rng.randint(8, 20) + day // 2):
            caller = rng.choice([*search, *search, ads])
            provider, model, price = rng.choice(MODELS)
            failed = rng.random() < 0.05
            tin, tout = (0, 0) if failed else (rng.randint(200, 6000), rng.randint(50, 1500))
            c = caller.consumer
            events.append(UsageEventData(
                request_id=os.urandom(12).hex(), created_at=now - timedelta(days=day, minutes=rng.randint(1, 600)),
                api_family="openai", status_code=502 if failed else 200, error_code="UPSTREAM_ERROR" if failed else "",
                route_id=1, route_name=rng.choice(["search-chat", "summarize", "rerank-embed"]), provider=provider,
                model=model, consumer_id=c.pk, consumer_name=c.name, team_id=c.team_id, team_name=c.team.name,
                environment="production", input_tokens=tin, output_tokens=tout, total_tokens=tin + tout,
                input_price_per_mtok=price.input_per_mtok, output_price_per_mtok=price.output_per_mtok,
                cost_usd=cost_usd(price, input_tokens=tin, output_tokens=tout),
            ))
    usage_events_write(events=events)
    team = search[0].consumer.team
    Limit.objects.create(scope=Limit.Scope.TEAM, period=Limit.Period.MONTH, team=team, usd=Decimal("2.50"))
    member = get_user_model().objects.create_user("maria", password=PASSWORD)
    TeamMembership.objects.create(user=member, team=team)
    get_user_model().objects.create_user("root", password=PASSWORD, is_staff=True)
    return {"team": team, "other": ads.consumer.team}


def blue_pixels(png: bytes) -> int:
    """How many pixels of the screenshot have (about) the cost bars' colour."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    colors = image.getcolors(maxcolors=image.width * image.height) or []
    return sum(n for n, rgb in colors if all(abs(a - b) <= 12 for a, b in zip(rgb, BAR_BLUE, strict=True)))


def test_dashboards_render_their_charts_in_chromium(chromium, gateway_server, month_of_usage) -> None:
    from playwright.sync_api import sync_playwright

    team = month_of_usage["team"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900}, device_scale_factor=1)
            page.goto(f"{gateway_server.url}/usage/")
            assert "/accounts/login/" in page.url  # Django auth first
            page.fill("#id_username", "maria")
            page.fill("#id_password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"**/usage/teams/{team.pk}/")
            assert page.locator("h1").inner_text() == "search"
            for chart in ("cost-daily", "tokens-daily", "by-route", "by-model", "by-consumer", "budget"):
                svg = page.locator(f'svg[data-chart="{chart}"]')
                box = svg.bounding_box()
                assert box is not None and box["width"] > 300 and box["height"] > 40, chart
                if chart != "budget":
                    assert svg.locator("rect.bar").count() > 0, chart
            assert page.locator('svg[data-chart="cost-daily"] rect.bar').count() == 30
            # Drawn, not just present: the cost chart's bars are on screen in their colour.
            assert blue_pixels(page.locator('svg[data-chart="cost-daily"]').screenshot()) > 500
            assert "bidder" not in page.content()  # another team's consumer
            assert "Budget $2.50" in page.content()
            shot = page.screenshot(full_page=True)
            assert blue_pixels(shot) > 500
            if os.environ.get("UPDATE_DOCS_SCREENSHOT"):
                SCREENSHOT.parent.mkdir(exist_ok=True)
                SCREENSHOT.write_bytes(shot)
            denied = page.goto(f"{gateway_server.url}/usage/teams/{month_of_usage['other'].pk}/")
            assert denied is not None and denied.status == 403

            staff = browser.new_page(viewport={"width": 1280, "height": 900})
            staff.goto(f"{gateway_server.url}/accounts/login/?next=/usage/")
            staff.fill("#id_username", "root")
            staff.fill("#id_password", PASSWORD)
            staff.click("button[type=submit]")
            staff.wait_for_url("**/usage/org/")
            assert staff.locator('svg[data-chart="by-team"] rect.bar').count() == 2
            assert blue_pixels(staff.locator('svg[data-chart="cost-daily"]').screenshot()) > 500
        finally:
            browser.close()

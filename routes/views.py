"""Plain Django views of the routes app."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse


def ratelimited(request: HttpRequest, exception: Exception) -> HttpResponse:
    """django-ratelimit's answer when an admin login or key issuance is over its rate: 429."""
    return HttpResponse(
        "Too many attempts: wait a minute and try again.", status=429, content_type="text/plain",
        headers={"Retry-After": "60"},
    )

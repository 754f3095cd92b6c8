"""`manage.py seed_demo`: the embedded demo's admin user, team, consumer key and `mock` routes.

Idempotent. Prints the admin URL, login and a fresh demo key.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from routes import services
from routes.models import Consumer, Environment, Route
from usage.models import Limit

DEMO_ROUTES = [
    ("mock-chat", "llm/v1/chat", "mock-chat-1"),
    ("mock-completions", "llm/v1/completions", "mock-completions-1"),
    ("mock-embeddings", "llm/v1/embeddings", "mock-embed-1"),
]


class Command(BaseCommand):
    help = "Seed the demo: admin user, team 'demo', consumer 'alice' with a key, and mock routes."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", default="admin")
        parser.add_argument("--url", default="http://127.0.0.1:8000")

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        if not user_model.objects.filter(username=options["username"]).exists():
            user_model.objects.create_superuser(options["username"], "admin@example.com", options["password"])
        team = services.team_get_or_create(name="demo")
        consumer = services.consumer_get_or_create(
            team=team, name="alice", kind=Consumer.Kind.PERSON, environment=Environment.DEVELOPMENT
        )
        for name, route_type, model in DEMO_ROUTES:
            route = Route.objects.filter(name=name).first() or services.route_create(
                name=name, route_type=route_type, provider="mock", model_name=model
            )
            services.route_grant(route=route, team=team)
            # A limit to see at work: each consumer may make 60 calls and use 20,000 tokens a minute
            # on each demo route (X-RateLimit-* headers on every answer, 429 past it).
            Limit.objects.get_or_create(route=route, scope=Limit.Scope.ROUTE_PER_CONSUMER, period=Limit.Period.MINUTE,
                                        defaults={"calls": 60, "tokens": 20_000})
        issued = services.api_key_issue(consumer=consumer, name="demo key")
        url = options["url"].rstrip("/")
        self.stdout.write(
            f"\nDemo ready.\n  Admin:    {url}/admin/  (login {options['username']} / {options['password']})\n"
            f"  API docs: {url}/api/docs/\n  Routes:   {', '.join(n for n, _, _ in DEMO_ROUTES)}"
            " (60 calls and 20,000 tokens a minute per consumer)\n"
            f"  Demo key (team demo, consumer alice; shown once):\n{issued.plaintext}\n"
        )

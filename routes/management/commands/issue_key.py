"""`manage.py issue_key --team T --consumer C [--service] [--environment production] [--admin] [--route R ...]`

Creates the team and consumer if missing, grants the named routes to the consumer, issues a key and
prints it alone as the last line of stdout (shown once: only its hash is stored).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from routes import services
from routes.errors import InvalidRequest
from routes.models import Consumer, Environment, Route


class Command(BaseCommand):
    help = "Issue a gateway key for a consumer (creating the team and consumer if needed)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--team", required=True)
        parser.add_argument("--consumer", required=True)
        parser.add_argument("--service", action="store_true", help="The consumer is a service, not a person.")
        parser.add_argument(
            "--environment", choices=Environment.values, default=None,
            help="Default: development for a new consumer; an existing consumer keeps its own.",
        )
        parser.add_argument("--admin", action="store_true", help="May manage routes and query every route.")
        parser.add_argument("--route", action="append", default=[], help="Grant this route (repeatable).")
        parser.add_argument("--name", default="", help="What the key is for.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            with transaction.atomic():
                routes = []
                for name in options["route"]:
                    route = Route.objects.filter(name=name).first()
                    if route is None:
                        raise CommandError(f"Route '{name}' does not exist.")
                    routes.append(route)
                team = services.team_get_or_create(name=options["team"])
                # Omitted flags keep an existing consumer as it is (it may be a production service).
                existing = Consumer.objects.filter(team=team, name=options["consumer"]).first()
                kind = Consumer.Kind.SERVICE if options["service"] else (
                    existing.kind if existing else Consumer.Kind.PERSON
                )
                environment = options["environment"] or (
                    existing.environment if existing else Environment.DEVELOPMENT
                )
                consumer = services.consumer_get_or_create(
                    team=team, name=options["consumer"], kind=kind, environment=environment
                )
                for route in routes:
                    services.route_grant(route=route, consumer=consumer)
                issued = services.api_key_issue(consumer=consumer, name=options["name"], is_admin=options["admin"])
        except InvalidRequest as exc:
            raise CommandError(exc.message) from None
        kind = "admin key" if options["admin"] else "key"
        self.stderr.write(f"Issued a {kind} for {consumer} ({consumer.environment}); it is shown only once.")
        self.stdout.write(issued.plaintext)

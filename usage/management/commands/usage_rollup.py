"""`manage.py usage_rollup`: fold new usage events into the hourly/daily aggregates (what beat runs).

    manage.py usage_rollup                          # fold what is not folded yet (idempotent)
    manage.py usage_rollup --prune                  # then delete raw events past the retention
    manage.py usage_rollup --rebuild --since 2025-08-01 [--until 2025-08-31]
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from usage.rollup import retention_cutoff, usage_events_prune, usage_rollup, usage_rollup_rebuild


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"not a date (YYYY-MM-DD): {value!r}") from None


class Command(BaseCommand):
    help = "Roll usage events up into hourly and daily aggregates; optionally prune or rebuild."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--prune", action="store_true",
                            help="After rolling up, delete raw events older than GATEWAY_USAGE_RETENTION_DAYS.")
        parser.add_argument("--rebuild", action="store_true",
                            help="Recompute the aggregates of --since..--until from the raw events.")
        parser.add_argument("--since", type=_day, help="First UTC day to rebuild (YYYY-MM-DD).")
        parser.add_argument("--until", type=_day, help="Last UTC day to rebuild (default: today).")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["rebuild"]:
            since: date | None = options["since"]
            until: date = options["until"] or timezone.now().date()
            if since is None:
                raise CommandError("--rebuild needs --since.")
            days = settings.GATEWAY["USAGE_RETENTION_DAYS"]
            if days and since < retention_cutoff(days=days).date():
                raise CommandError(f"raw events before {retention_cutoff(days=days).date()} may have been deleted "
                                   f"(retention {days} days): rebuilding from them would lose totals.")
            folded = usage_rollup_rebuild(start=since, end=until)
            self.stdout.write(f"rebuilt {since}..{until}: {folded} events folded")
        else:
            self.stdout.write(f"{usage_rollup()} events folded")
        if options["prune"]:
            days = settings.GATEWAY["USAGE_RETENTION_DAYS"]
            self.stdout.write(f"{usage_events_prune(days=days)} raw events deleted (retention {days} days)")

"""`manage.py usage_report --team T --since YYYY-MM-DD [--until ...] [--group-by route,day] [--csv]`."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from routes.models import Team
from usage.reports import METRICS, ReportError, ReportFilters, money, parse_day, usage_report


class Command(BaseCommand):
    help = "Print a cost report (a table, or CSV with --csv) for a team or for everyone."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--team", help="Team name or id (default: every team).")
        parser.add_argument("--since", required=True, help="First UTC day, YYYY-MM-DD.")
        parser.add_argument("--until", help="Last UTC day, included (default: today).")
        parser.add_argument("--group-by", default="route", help="Comma-separated: team, consumer, route, model, day.")
        parser.add_argument("--route", help="Only this route.")
        parser.add_argument("--consumer", help="Only this consumer.")
        parser.add_argument("--csv", action="store_true", help="CSV on stdout.")

    def handle(self, *args: Any, **options: Any) -> None:
        team_id: int | None = None
        if options["team"]:
            raw = options["team"]
            team = Team.objects.filter(pk=int(raw)).first() if raw.isdigit() else Team.objects.filter(name=raw).first()
            if team is None:
                raise CommandError(f"no team {raw!r}")
            team_id = team.pk
        try:
            since = parse_day(options["since"], name="--since", default=timezone.now().date())
            until = parse_day(options["until"], name="--until", default=timezone.now().date())
            report = usage_report(start=since, end=until, group_by=options["group_by"].split(","),
                                  filters=ReportFilters(team_id=team_id, route=options["route"],
                                                        consumer=options["consumer"]))
        except ReportError as exc:
            raise CommandError(str(exc)) from None
        if options["csv"]:
            self.stdout.write(report.as_csv(), ending="")
            return
        columns = report.columns()
        lines = [columns] + [[_cell(row.get(c)) for c in columns] for row in report.rows]
        lines.append(["TOTAL"] + [""] * (len(columns) - len(METRICS) - 1) + [_cell(report.totals[m]) for m in METRICS])
        widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
        for line in lines:
            self.stdout.write("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if hasattr(value, "quantize"):
        return money(value)
    return str(value)

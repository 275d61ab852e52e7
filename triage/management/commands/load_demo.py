from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management import call_command, get_commands
from django.core.management.base import CommandError
from django.db import transaction

from config.commands import DatabaseCommand
from triage.importers import import_tickets
from triage.models import Correction, Team, Ticket
from triage.roles import ADMINS, AGENTS

DEMO_DIR = Path(__file__).resolve().parents[2] / "demo_data"
DEMO_USERS = [("admin", "triage-admin", ADMINS), ("agent", "triage-agent", AGENTS), ("agent2", "triage-agent", AGENTS)]


class Command(DatabaseCommand):
    help = (
        "Load the Brightnest demo help centre: teams, knowledge-base articles, tickets (two thirds of them "
        "with an agent's label, the rest new) and demo users. Safe to run again: nothing is duplicated."
    )

    def add_arguments(self, parser):
        parser.add_argument("--no-route", action="store_true", help="do not enqueue routing of new tickets")
        parser.add_argument("--no-users", action="store_true")

    def handle(self, *args, no_route: bool, no_users: bool, **options):
        teams = json.loads((DEMO_DIR / "teams.json").read_text())
        with transaction.atomic():
            for spec in teams:
                Team.objects.update_or_create(
                    slug=spec["slug"],
                    defaults={k: spec[k] for k in ("name", "description", "hypothesis")},
                )
        self.stdout.write(f"teams: {len(teams)}")

        if "import_articles" in get_commands():
            call_command("import_articles", str(DEMO_DIR / "articles.jsonl"), stdout=self.stdout)
        else:
            self.stderr.write("import_articles is not available; knowledge base not loaded")

        if "load_tag_sets" in get_commands():  # tags sit above triage: called by name, never imported
            call_command("load_tag_sets", stdout=self.stdout)

        lines = (DEMO_DIR / "tickets.jsonl").read_text().splitlines()
        rows = []
        for number, line in enumerate(lines):
            row = json.loads(line)
            row.pop("articles", None)
            if number % 3 == 2:
                # A third of the demo tickets arrive unlabeled, as new tickets do.
                row.pop("team", None)
            rows.append(json.dumps(row))
        report = import_tickets("\n".join(rows).encode(), "jsonl", route=not no_route)
        if not report.ok:
            raise CommandError("demo tickets failed to import: " + "; ".join(map(str, report.errors[:5])))
        labels = Correction.objects.filter(kind=Correction.Kind.IMPORTED).count()
        self.stdout.write(
            f"tickets: {report.created} created, {report.unchanged} already present "
            f"({Ticket.objects.count()} in all, {labels} labeled)"
        )

        if not no_users:
            if settings.PRODUCTION:
                raise CommandError("demo users are not created when TRIAGE_ENV=production")
            for username, password, group in DEMO_USERS:
                user, created = User.objects.get_or_create(
                    username=username, defaults={"email": f"{username}@example.com"}
                )
                if created:
                    user.set_password(password)
                    user.is_staff = group == ADMINS
                    user.save()
                user.groups.add(Group.objects.get_or_create(name=group)[0])
            self.stdout.write("users: " + ", ".join(f"{u} / {p} ({g})" for u, p, g in DEMO_USERS))

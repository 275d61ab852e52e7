"""Teams and an unlabeled stream for the self-training tests: the demo help desk (10 teams, 330 tickets).

The demo tickets carry the team they belong to; only the tests' own checks read it, never the code
under test (tickets are stored with subject and body only).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from triage.models import Team, Ticket

DEMO = Path(__file__).resolve().parents[2] / "triage" / "demo_data"
_numbers = itertools.count(1)

GERMAN = [
    "Meine Karte wurde abgelehnt, obwohl genug Geld auf dem Konto ist.",
    "Ich kann mich seit gestern nicht mehr in mein Konto einloggen.",
    "Das Paket ist seit zwei Wochen unterwegs und nicht angekommen.",
    "Bitte erstatten Sie mir den doppelt abgebuchten Betrag zurück.",
    "Die App stürzt jedes Mal ab, wenn ich die Einstellungen öffne.",
    "Wie kann ich meine Lieferadresse nachträglich ändern?",
    "Der Thermostat verbindet sich nicht mit dem WLAN im Wohnzimmer.",
    "Ich möchte mein Abonnement kündigen und keine Rechnungen mehr bekommen.",
    "Das Gerät ist nach drei Monaten kaputt gegangen, gilt die Garantie?",
    "Bitte löschen Sie alle meine persönlichen Daten aus Ihrem System.",
]


def demo_teams(slugs: list[str] | None = None) -> dict[str, Team]:
    rows = json.loads((DEMO / "teams.json").read_text())
    return {
        row["slug"]: Team.objects.create(slug=row["slug"], name=row["name"], description=row["description"])
        for row in rows
        if slugs is None or row["slug"] in slugs
    }


def demo_tickets(slugs: list[str] | None = None) -> list[dict]:
    rows = [json.loads(line) for line in (DEMO / "tickets.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if slugs is None or r["team"] in slugs]


def store_tickets(texts: list[tuple[str, str]]) -> list[Ticket]:
    return Ticket.objects.bulk_create(
        [Ticket(external_id=f"S-{next(_numbers)}", subject=subject, body=body) for subject, body in texts]
    )


def store_demo_stream(slugs: list[str] | None = None) -> list[Ticket]:
    """The demo tickets as an unlabeled stream: subject and body only."""
    return store_tickets([(r["subject"], r["body"]) for r in demo_tickets(slugs)])

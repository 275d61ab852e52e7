"""Teams and tickets for the retraining tests.

The queues have opaque names and no descriptions ("Queue A"), as many help desks' queues do: a
zero-shot scorer has nothing to go on, so labels are what teaches the router. Each queue has its own
topic, and enough distinct tickets for training, held-out labels and new tickets to route afterwards.
"""

from __future__ import annotations

import itertools

from tags.models import TagLabel, TagSet
from tags.services import create_tag_set
from triage.models import Correction, Team, Ticket
from triage.services import record_label

TOPICS: dict[str, list[str]] = {
    "queue-a": [  # billing
        "I was charged twice for the same order this month",
        "Please refund the duplicate payment on my credit card",
        "My invoice shows the wrong amount, can you correct it",
        "Why did my subscription renew and charge me without notice",
        "The VAT on my receipt is calculated incorrectly",
        "I need a copy of last year's invoices for my accountant",
        "You billed my card after I cancelled the plan",
        "The refund you promised two weeks ago has not arrived",
        "Can I pay by bank transfer instead of credit card",
        "There is an unknown charge from your company on my statement",
        "Please change the billing address on my invoices",
        "My payment was declined but the money left my account",
        "How do I get a receipt for my annual subscription payment",
        "I was overcharged for the premium plan upgrade",
    ],
    "queue-b": [  # delivery
        "My parcel has not arrived and tracking has not moved for a week",
        "The courier says delivered but there is no package at my door",
        "The box arrived damaged and the lamp inside is broken",
        "Can I change the delivery address of my shipment",
        "The tracking number you sent does not work on the carrier site",
        "My order was sent to the wrong address",
        "When will my backordered item be shipped",
        "Half of my order is missing from the delivery",
        "The delivery driver left the package in the rain",
        "Can I pick up my order at a collection point instead",
        "My shipment is stuck in customs, what should I do",
        "I received someone else's package with my order number",
        "The express delivery took ten days",
        "Please reschedule the delivery to next Monday",
    ],
    "queue-c": [  # sign-in
        "I cannot log in, the password reset email never arrives",
        "My account is locked after too many login attempts",
        "The two-factor code from the authenticator app is rejected",
        "I lost my phone and cannot get the 2FA code to sign in",
        "How do I change the email address I use to log in",
        "The login page keeps sending me back to the sign-in form",
        "Someone else may have accessed my account, please secure it",
        "I never receive the verification SMS when signing in",
        "Single sign-on with our company Google account stopped working",
        "The reset password link says it has expired",
        "I want to enable two-factor authentication on my account",
        "My username is not recognised although I registered last year",
        "Please unlock my account, I am the owner",
        "I get an invalid credentials error with the right password",
    ],
    "queue-d": [  # app bugs
        "The mobile app crashes when I open the settings screen",
        "Export to PDF produces a blank document",
        "The dashboard charts do not load in Firefox",
        "Search returns no results even for exact titles",
        "The app freezes when I upload a photo larger than 5 MB",
        "Notifications appear twice on Android since the update",
        "The save button does nothing in the editor",
        "Dark mode makes the text unreadable on the report page",
        "Syncing between the desktop and the phone app fails with error 500",
        "The calendar view shows events on the wrong day",
        "After the last update the app drains my battery",
        "Copy and paste from the spreadsheet view breaks the formatting",
        "The API returns a timeout error for every request since yesterday",
        "Scrolling in the list view is very slow and jumps around",
    ],
}

_numbers = itertools.count(1)

NAMES = {"queue-a": "Queue A", "queue-b": "Queue B", "queue-c": "Queue C", "queue-d": "Queue D"}


def make_teams(slugs=("queue-a", "queue-b", "queue-c")) -> dict[str, Team]:
    return {slug: Team.objects.create(slug=slug, name=NAMES[slug]) for slug in slugs}


def make_ticket(text: str, n: int | None = None) -> Ticket:
    n = next(_numbers) + 100_000 if n is None else n
    return Ticket.objects.create(external_id=f"T-{n}", subject=text[:80], body=text)


def label_tickets(teams: dict[str, Team], per_team: int, *, start: int = 0, agent=None) -> list[Ticket]:
    """``per_team`` tickets of each team's topic, each labelled (corrected) to its team."""
    tickets = []
    for slug, team in teams.items():
        for text in TOPICS[slug][start : start + per_team]:
            ticket = make_ticket(text)
            record_label(ticket, team, agent=agent, kind=Correction.Kind.CORRECTED)
            tickets.append(ticket)
    return tickets


def training_data(slugs=("queue-a", "queue-b", "queue-c"), per_team: int = 6) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    for slug in slugs:
        for text in TOPICS[slug][:per_team]:
            texts.append(text)
            labels.append(slug)
    return texts, labels


# --- Tag sets labelled by an agent (tag-set training) ---------------------------------------------

OUTAGE = [
    "The whole site is down, nothing loads for any of our users",
    "Your API returns 503 for every request since this morning",
    "Dashboard unreachable, servers not responding at all",
    "Checkout page times out for everyone, total outage",
    "Service unavailable error on every page of the app",
    "Nothing works, the platform has been offline for an hour",
    "Login page will not load, your servers seem to be down",
    "All our integrations fail, the service is completely down",
    "The mobile app cannot reach your servers, outage everywhere",
]
SECURITY = [
    "Someone logged into my account from another country",
    "I received a phishing email pretending to be your support team",
    "My password was changed without me doing it",
    "Suspicious login alerts keep coming, I think I was hacked",
    "A stranger accessed our admin account and changed the settings",
    "Unknown device signed in to my account last night",
    "There is a security hole, I can see other customers' data",
    "Fraudulent charges after my account was compromised",
    "Two-factor codes arrive that I never requested, account attack",
]
OTHER = [
    "How do I change the billing address on my invoice",
    "Can I export my data to a spreadsheet",
    "Please add a dark mode to the settings page",
    "Where can I find last month's invoice",
    "How do I invite a colleague to my workspace",
    "Is there a discount for yearly plans",
    "What file formats can I upload",
    "I would like to change my username",
    "Thanks for the quick help yesterday",
]


def label_topics(agent) -> TagSet:
    """Topics (multi-label: outage, security): 9 tickets fit each tag, 9 fit neither; every cell said."""
    topics = create_tag_set("Topics", kind="multi", tags=[{"name": "outage"}, {"name": "security"}])
    outage, security = topics.tags.get(slug="outage"), topics.tags.get(slug="security")
    for texts, fits in ((OUTAGE, {outage}), (SECURITY, {security}), (OTHER, set())):
        for text in texts:
            ticket = Ticket.objects.create(subject=text[:40], body=text)
            for tag in (outage, security):
                action = TagLabel.Action.ADD if tag in fits else TagLabel.Action.REMOVE
                TagLabel.objects.create(ticket=ticket, tag=tag, action=action, agent=agent)
    return topics


def label_urgency(agent) -> TagSet:
    """Urgency (single-label: low, high): 18 tickets high, 13 low."""
    urgency = create_tag_set("Urgency", kind="single", tags=[{"name": "low"}, {"name": "high"}])
    high, low = urgency.tags.get(slug="high"), urgency.tags.get(slug="low")
    for texts, tag in ((OUTAGE + SECURITY, high), (OTHER + OTHER[:4], low)):
        for text in texts:
            ticket = Ticket.objects.create(subject="urgency", body=text)
            TagLabel.objects.create(ticket=ticket, tag=tag, action=TagLabel.Action.ADD, agent=agent)
    return urgency

"""A help desk with history, built fast (bulk inserts): what the API serves under load.

Every ticket has two routing decisions (by an older and the current model version), five article
suggestions with the passage that matched (an embedded passage row, as the search stores them), a
tag prediction for every tag of the demo tag sets, and one ticket in three carries two labels from
agents, one in five an agent's tag label. Ticket texts are the demo tickets'; used by the query-count
tests and by ``bench/bench_api.py``.
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth.models import Group, User
from django.core.management import call_command

from mlops.models import ModelVersion
from search.models import EMBEDDING_DIM, Article, Passage, Suggestion
from tags.models import Tag, TagLabel, TagPrediction
from triage.models import Correction, Prediction, Team, Ticket
from triage.roles import AGENTS

DEMO = Path(__file__).resolve().parents[2] / "triage" / "demo_data"
TEAMS = ("billing", "shipping", "accounts", "privacy", "devices", "returns", "payments", "technical")
SUGGESTIONS_PER_TICKET = 5


@dataclass
class HelpDesk:
    teams: list[Team]
    agents: list[User]
    tickets: int


def build_help_desk(n_tickets: int, *, n_agents: int = 5, seed: int = 0) -> HelpDesk:
    """Store ``n_tickets`` tickets with predictions, suggestions and labels; returns what it made."""
    rng = random.Random(seed)
    demo = [json.loads(line) for line in (DEMO / "tickets.jsonl").read_text().splitlines() if line.strip()]
    agents_group = Group.objects.get_or_create(name=AGENTS)[0]
    agents = []
    for i in range(n_agents):
        agent = User.objects.create_user(username=f"load-agent-{i}-{seed}", password=None)
        agent.groups.add(agents_group)
        agents.append(agent)
    teams = [Team.objects.get_or_create(slug=slug, defaults={"name": slug.title()})[0] for slug in TEAMS]
    old = ModelVersion.objects.create(scorer="embedding", model_ref="load", version=f"load-old-{seed}")
    current = ModelVersion.objects.create(scorer="nli", model_ref="load", version=f"load-current-{seed}")
    articles = Article.objects.bulk_create(
        Article(
            title=f"How to {rng.choice(['fix', 'change', 'find', 'cancel'])} {rng.choice(TEAMS)} issue {i}",
            body="Step one. Step two. " * 40,
            body_html="<p>Step one. Step two.</p>" * 40,
            url=f"https://help.example.com/{seed}/{i}",
        )
        for i in range(40)
    )
    passages = {
        passage.article_id: passage
        for passage in Passage.objects.bulk_create(
            Passage(
                article=article,
                position=0,
                text=f"{article.title}. Step one. Step two.",
                text_hash=f"load-{seed}-{article.pk}",
                embedding=[rng.uniform(-1, 1) for _ in range(EMBEDDING_DIM)],
                embedder_version="load",
            )
            for article in articles
        )
    }
    # The demo's tag sets (urgency, sentiment, language, topics): every ticket is scored on each tag.
    call_command("load_tag_sets", stdout=io.StringIO())
    tags = list(Tag.objects.filter(archived_at__isnull=True, tag_set__active=True))
    statuses = [Ticket.Status.ROUTED, Ticket.Status.NEEDS_TRIAGE, Ticket.Status.RESOLVED]
    tickets = Ticket.objects.bulk_create(
        Ticket(
            subject=(d := demo[i % len(demo)])["subject"],
            body=d["body"],
            requester=d.get("requester", ""),
            channel=d.get("channel", "web"),
            status=rng.choice(statuses),
            team=rng.choice(teams) if rng.random() < 0.7 else None,
        )
        for i in range(n_tickets)
    )
    predictions, suggestions, labels, tag_predictions, tag_labels = [], [], [], [], []
    decisions = list(Prediction.Decision)
    for ticket in tickets:
        for version in (old, current):
            scores = {t.slug: round(rng.random(), 4) for t in teams}
            best = max(scores, key=scores.get)
            predictions.append(
                Prediction(
                    ticket=ticket,
                    model_version=version,
                    scorer=version.scorer,
                    scores=scores,
                    raw_scores=scores,
                    chosen_team=next(t for t in teams if t.slug == best),
                    confidence=scores[best],
                    threshold=0.8,
                    decision=rng.choice(decisions),
                    latency_ms=rng.uniform(20, 400),
                )
            )
        for rank, article in enumerate(rng.sample(articles, SUGGESTIONS_PER_TICKET), start=1):
            suggestions.append(
                Suggestion(
                    ticket=ticket,
                    article=article,
                    passage=passages[article.pk],
                    passage_text="A passage of the article that matched the ticket. " * 4,
                    score=1.0 / rank,
                    rank=rank,
                    stage_scores={"dense": 0.5, "hybrid": 0.4, "rerank": 3.1, "final": 1.0 / rank},
                )
            )
        for tag in tags:
            probability = round(rng.random(), 4)
            tag_predictions.append(
                TagPrediction(
                    ticket=ticket,
                    tag=tag,
                    probability=probability,
                    raw_score=probability,
                    threshold=0.5,
                    is_set=probability >= 0.5,
                    scorer="nli",
                    scorer_version=f"load-{seed}",
                    calibration="native",
                    model_version=current,
                )
            )
        if tags and ticket.pk % 5 == 0:
            tag_labels.append(TagLabel(ticket=ticket, tag=rng.choice(tags), action="add", agent=rng.choice(agents)))
        if ticket.pk % 3 == 0:
            for kind in (Correction.Kind.ACCEPTED, Correction.Kind.CORRECTED):
                team = rng.choice(teams)
                labels.append(
                    Correction(
                        ticket=ticket,
                        kind=kind,
                        from_team=rng.choice(teams),
                        to_team=team,
                        to_team_slug=team.slug,
                        agent=rng.choice(agents),
                        source="dashboard",
                    )
                )
    Prediction.objects.bulk_create(predictions, batch_size=2000)
    Suggestion.objects.bulk_create(suggestions, batch_size=2000)
    Correction.objects.bulk_create(labels, batch_size=2000)
    TagPrediction.objects.bulk_create(tag_predictions, batch_size=2000)
    TagLabel.objects.bulk_create(tag_labels, batch_size=2000)
    return HelpDesk(teams=teams, agents=agents, tickets=len(tickets))

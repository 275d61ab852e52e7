from __future__ import annotations

import pytest

from triage.models import Team

KB = [
    {
        "external_id": "kb-refund",
        "title": "Request a refund for a subscription charge",
        "body": "# Refunds\n\nIf you were charged for a renewal you did not want, ask for a refund within 14 days "
        "of the charge. Open **Settings > Subscription > Billing history**, pick the charge and tap "
        "*Request refund*. Refunds reach your card in 5 to 10 business days.",
        "team": "billing",
    },
    {
        "external_id": "kb-password",
        "title": "Reset your password",
        "body": "# Reset your password\n\nTap **Forgot password?** on the sign-in screen and enter your email. "
        "The reset email arrives within a few minutes; check your spam folder if it does not. The link "
        "expires after one hour.",
        "team": "account",
    },
    {
        "external_id": "kb-offline",
        "title": "Device shows Offline in the app",
        "body": "<h2>Offline devices</h2><p>A blinking orange light means the camera lost its Wi-Fi "
        "connection. Move the router closer or add a mesh extender, then restart the camera.</p>"
        "<script>alert('x')</script>",
        "format": "html",
        "team": "setup",
    },
    {
        "external_id": "kb-shipping",
        "title": "Track your order",
        "body": "Every order gets a tracking number by email once it ships. If tracking says label created for "
        "more than three days, contact us with your order number.",
        "format": "text",
        "team": "orders",
    },
]


@pytest.fixture
def teams(db) -> dict[str, Team]:
    return {
        slug: Team.objects.create(slug=slug, name=slug.capitalize())
        for slug in ("billing", "account", "setup", "orders")
    }


@pytest.fixture(scope="session")
def embedder():
    """The packaged all-MiniLM-L6-v2, loaded once for the whole run."""
    from mlops.inference.encoders import get_embedder

    return get_embedder()


@pytest.fixture(scope="session")
def cross_encoder():
    from mlops.inference.encoders import get_cross_encoder

    return get_cross_encoder()


class CountingEmbedder:
    """The real embedder, counting how many texts it was asked to embed."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.model = inner.model
        self.version = inner.version
        self.dim = inner.dim
        self.texts: list[str] = []

    def encode(self, texts, batch_size: int = 64):
        self.texts.extend(texts)
        return self.inner.encode(texts, batch_size=batch_size)


@pytest.fixture
def counting_embedder(embedder) -> CountingEmbedder:
    return CountingEmbedder(embedder)


def store_kb(embedder) -> dict:
    """Store the four articles above (and their teams) and index them with ``embedder``; by external id."""
    from search.indexing import index_article
    from search.services import upsert_article

    for slug in ("billing", "account", "setup", "orders"):
        Team.objects.get_or_create(slug=slug, defaults={"name": slug.capitalize()})
    articles = {}
    for row in KB:
        article, _ = upsert_article(row, index=False)
        assert index_article(article.pk, embedder=embedder) == "indexed"
        article.refresh_from_db()
        articles[row["external_id"]] = article
    return articles


@pytest.fixture
def kb(teams, embedder):
    """The four articles above, stored and indexed with the packaged embedder."""
    return store_kb(embedder)

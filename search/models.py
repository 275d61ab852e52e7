"""Knowledge base: articles, their passages with embeddings, and suggestions made for tickets.

An article is *searchable* when it is published and a complete set of passages is stored for it:
``indexed_hash`` is set in the same transaction that stores the passages, so a half-indexed article
is never served. While an edit is re-indexed the previous complete passages keep being served.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import models
from pgvector.django import HnswIndex, VectorField

EMBEDDING_DIM = 384  # all-MiniLM-L6-v2; another embedder needs a migration of this column.
FULLTEXT_CONFIG = "english"


def cosine_hnsw(name: str) -> HnswIndex:
    """The HNSW index every embedding column gets: cosine distance, m=16, ef_construction=64."""
    return HnswIndex(name=name, fields=["embedding"], m=16, ef_construction=64, opclasses=["vector_cosine_ops"])


class ArticleQuerySet(models.QuerySet):
    def searchable(self) -> ArticleQuerySet:
        """Published articles with a complete set of stored passages."""
        return self.filter(published=True).exclude(indexed_hash="")


class Article(models.Model):
    class Format(models.TextChoices):
        MARKDOWN = "markdown", "Markdown"
        HTML = "html", "HTML"
        TEXT = "text", "Plain text"

    class IndexState(models.TextChoices):
        PENDING = "pending", "Pending"
        INDEXING = "indexing", "Indexing"
        INDEXED = "indexed", "Indexed"
        FAILED = "failed", "Failed"

    external_id = models.CharField(max_length=200, unique=True, null=True, blank=True)
    url = models.URLField(max_length=500, blank=True)
    title = models.CharField(max_length=300)
    body = models.TextField(help_text="The source as written (Markdown, HTML or text).")
    body_format = models.CharField(max_length=16, choices=Format.choices, default=Format.MARKDOWN)
    body_html = models.TextField(blank=True, help_text="Sanitised HTML for display.")
    body_text = models.TextField(blank=True, help_text="Plain text for indexing.")
    team = models.ForeignKey("triage.Team", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    published = models.BooleanField(default=True)
    content_hash = models.CharField(max_length=64, blank=True)
    index_state = models.CharField(max_length=16, choices=IndexState.choices, default=IndexState.PENDING)
    index_error = models.TextField(blank=True)
    indexed_hash = models.CharField(max_length=64, blank=True, help_text="content_hash the passages were built from.")
    embedder_version = models.CharField(max_length=200, blank=True)
    indexed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ArticleQuerySet.as_manager()

    class Meta:
        ordering = ["title"]
        constraints = [
            # Imports are idempotent by URL when a row has no external id.
            models.UniqueConstraint(fields=["url"], condition=~models.Q(url=""), name="article_url_unique"),
        ]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        """Its "how it's found" page (the admin's "View on site" leads there)."""
        from django.urls import reverse

        return reverse("search:article_found", kwargs={"pk": self.pk})

    @property
    def searchable(self) -> bool:
        return self.published and bool(self.indexed_hash)

    @property
    def needs_indexing(self) -> bool:
        return self.indexed_hash != self.content_hash


class Passage(models.Model):
    """A window of an article's text (its title first), embedded with ``embedder_version``."""

    article = models.ForeignKey(Article, on_delete=models.CASCADE, related_name="passages")
    position = models.PositiveIntegerField()
    text = models.TextField()
    text_hash = models.CharField(max_length=64)
    token_count = models.PositiveIntegerField(default=0)
    embedding = VectorField(dimensions=EMBEDDING_DIM)
    embedder_version = models.CharField(max_length=200)
    # Stored so that full-text ranking reads it instead of re-parsing every candidate's text.
    search_vector = models.GeneratedField(
        expression=SearchVector("text", config=FULLTEXT_CONFIG),
        output_field=SearchVectorField(),
        db_persist=True,
    )

    class Meta:
        ordering = ["article_id", "position"]
        constraints = [models.UniqueConstraint(fields=["article", "position"], name="passage_position_unique")]
        indexes = [
            cosine_hnsw("passage_embedding_hnsw"),
            GinIndex(fields=["search_vector"], name="passage_search_vector"),
            models.Index(fields=["embedder_version"], name="passage_embedder_version"),
        ]

    def __str__(self) -> str:
        return f"{self.article_id}#{self.position}"


class Suggestion(models.Model):
    """An article suggested for a ticket, with the passage that matched and each stage's score.

    ``score`` is the served (final) score; ``stage_scores`` holds ``dense``, ``hybrid``, ``rerank``
    and ``final`` with the models and fusion weights that produced them.
    """

    ticket = models.ForeignKey("triage.Ticket", on_delete=models.CASCADE, related_name="suggestions")
    article = models.ForeignKey(Article, on_delete=models.CASCADE, related_name="suggestions")
    passage = models.ForeignKey(Passage, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    passage_text = models.TextField(blank=True, help_text="The matching passage as it was when suggested.")
    score = models.FloatField()
    rank = models.PositiveIntegerField()
    stage_scores = models.JSONField(default=dict, blank=True)
    relevance = models.FloatField(
        null=True, blank=True, help_text="Probability that the article helps (search/relevance.py); none: no model."
    )
    fits = models.BooleanField(
        default=True, help_text="At or above the relevance cutoff; when no suggestion fits, the page says so."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["ticket_id", "rank"]
        constraints = [models.UniqueConstraint(fields=["ticket", "article"], name="one_suggestion_per_article")]

    def __str__(self) -> str:
        return f"ticket {self.ticket_id} → {self.article_id} (#{self.rank})"


class SuggestionFeedback(models.Model):
    ticket = models.ForeignKey("triage.Ticket", on_delete=models.CASCADE, related_name="article_feedback")
    article = models.ForeignKey(Article, on_delete=models.CASCADE, related_name="feedback")
    suggestion = models.ForeignKey(Suggestion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    rank = models.PositiveIntegerField(null=True, blank=True, help_text="Rank shown when the mark was given.")
    helpful = models.BooleanField()
    agent = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{'helpful' if self.helpful else 'not helpful'}: ticket {self.ticket_id} → {self.article_id}"


class LearnedQuestion(models.Model):
    """A ticket an agent marked for an article, kept as a question that article answers (``helpful``)
    or does not (a negative: it lowers the article for similar tickets).

    One row per mark (``feedback``): retracting the mark or deleting the ticket deletes the question
    (cascade). ``text`` is the ticket's ask, not the whole e-mail: greetings, signatures and quoted
    replies removed, then its sentences nearest the article kept (``mlops/text.py``), because whole
    e-mails match each other on their pleasantries. ``embedding`` is filled on the inference queue;
    until then (or after an embedder switch) the question is not used. An article edited after the
    mark keeps its questions, flagged ``article_edited`` for the admin to review.
    """

    article = models.ForeignKey(Article, on_delete=models.CASCADE, related_name="learned_questions")
    ticket = models.ForeignKey("triage.Ticket", on_delete=models.CASCADE, related_name="learned_questions")
    feedback = models.OneToOneField(SuggestionFeedback, on_delete=models.CASCADE, related_name="learned_question")
    helpful = models.BooleanField()
    text = models.TextField(help_text="The ticket's ask as matched against new tickets.")
    source_text = models.TextField(blank=True, help_text="The ticket text it was taken from.")
    embedding = VectorField(dimensions=EMBEDDING_DIM, null=True, blank=True)
    embedder_version = models.CharField(max_length=200, blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    marked_at = models.DateTimeField(help_text="When the agent gave the mark.")
    article_hash = models.CharField(max_length=64, blank=True, help_text="The article's content when marked.")
    article_edited = models.BooleanField(default=False, help_text="The article changed after the mark.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-marked_at", "-id"]
        indexes = [
            cosine_hnsw("learned_question_hnsw"),
            models.Index(fields=["article", "helpful"], name="learned_question_article"),
        ]

    def __str__(self) -> str:
        return f"{'+' if self.helpful else '-'} {self.article_id}: {self.text[:60]}"


class FusionWeights(models.Model):
    """The fusion policy that combines the retrieval stages into the served ranking; the newest row is used.

    Fitted on labeled queries (``fit_search_weights``) or agents' helpful marks. With no row the
    policy shipped in ``search/default_weights.json`` applies.
    """

    weights = models.JSONField(
        help_text='One vector {"dense": w, "hybrid": w, "rerank": w} summing to 1, or by query length: '
        '{"short_max_words": n, "short": {...}, "long": {...}}.'
    )
    source = models.CharField(max_length=32, help_text="labeled, feedback or default.")
    n_queries = models.PositiveIntegerField(default=0)
    metrics = models.JSONField(default=dict, blank=True, help_text="Fit-set metrics of every stage and of final.")
    embedder_version = models.CharField(max_length=200, blank=True)
    reranker_version = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "fusion weights"

    def __str__(self) -> str:
        from .fusion import FusionPolicy

        try:
            return FusionPolicy.from_json(self.weights).describe()
        except (ValueError, TypeError):
            return f"invalid weights {self.weights!r}"

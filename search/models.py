"""Knowledge base: articles, their passages with embeddings, and suggestions made for tickets."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector
from django.db import models
from pgvector.django import HnswIndex, VectorField

EMBEDDING_DIM = 384  # all-MiniLM-L6-v2; another embedder needs a migration of this column.


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

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title


class Passage(models.Model):
    article = models.ForeignKey(Article, on_delete=models.CASCADE, related_name="passages")
    position = models.PositiveIntegerField()
    text = models.TextField()
    text_hash = models.CharField(max_length=64)
    embedding = VectorField(dimensions=EMBEDDING_DIM)
    embedder_version = models.CharField(max_length=200)

    class Meta:
        ordering = ["article_id", "position"]
        constraints = [models.UniqueConstraint(fields=["article", "position"], name="passage_position_unique")]
        indexes = [
            HnswIndex(
                name="passage_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
            GinIndex(SearchVector("text", config="english"), name="passage_fulltext"),
        ]


class Suggestion(models.Model):
    """An article suggested for a ticket, with the passage that matched and each stage's score."""

    ticket = models.ForeignKey("triage.Ticket", on_delete=models.CASCADE, related_name="suggestions")
    article = models.ForeignKey(Article, on_delete=models.CASCADE, related_name="suggestions")
    passage = models.ForeignKey(Passage, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    score = models.FloatField()
    rank = models.PositiveIntegerField()
    stage_scores = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["ticket_id", "rank"]
        constraints = [models.UniqueConstraint(fields=["ticket", "article"], name="one_suggestion_per_article")]


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

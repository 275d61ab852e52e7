"""Admin for the knowledge base. Every write goes through ``search.services`` so that admin edits are
validated, sanitised and re-indexed exactly like API and import writes."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Count
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from . import indexing, services
from .models import Article, FusionWeights, Passage, Suggestion, SuggestionFeedback

EDITABLE = ["title", "external_id", "url", "body_format", "body", "team", "published"]


# A URL typed without a scheme is taken as https (Django 6's default; 5.2 warns unless it is said).
HTTPS_URLS = {models.URLField: {"assume_scheme": "https"}}


def _form_field(field, **kwargs):
    return field.formfield(**{**HTTPS_URLS.get(type(field), {}), **kwargs})


class ArticleForm(forms.ModelForm):
    class Meta:
        model = Article
        fields = EDITABLE
        formfield_callback = _form_field

    def clean(self):
        data = super().clean()
        raw = {name: data.get(name) for name in EDITABLE if name in data}
        try:
            self.service_fields = services.clean_article_fields(raw)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                self.add_error(field if field in self.fields else None, errors)
        return data


class PassageInline(admin.TabularInline):
    model = Passage
    fields = ["position", "token_count", "text", "embedder_version"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Article)
class ArticleAdmin(admin.ModelAdmin):
    form = ArticleForm
    formfield_overrides = HTTPS_URLS
    list_display = ["title", "external_id", "team", "published", "index_state", "n_passages", "indexed_at"]
    list_filter = ["index_state", "published", "team", "body_format", "embedder_version"]
    search_fields = ["title", "external_id", "url"]
    readonly_fields = ["index_state", "index_error", "embedder_version", "indexed_at", "content_hash", "preview"]
    fieldsets = [
        (None, {"fields": EDITABLE}),
        ("Index", {"fields": ["index_state", "index_error", "embedder_version", "indexed_at", "content_hash"]}),
        ("Display", {"fields": ["preview"]}),
    ]
    inlines = [PassageInline]
    actions = ["reindex_selected", "publish", "unpublish"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(passage_count=Count("passages"))

    @admin.display(description="passages", ordering="passage_count")
    def n_passages(self, obj: Article) -> int:
        return obj.passage_count

    @admin.display(description="sanitised body")
    def preview(self, obj: Article) -> str:
        # body_html was cleaned by nh3 when it was stored; it is safe to render.
        return mark_safe(obj.body_html) if obj.body_html else "—"  # noqa: S308

    def save_model(self, request, obj, form, change):
        article, _ = services.upsert_article(
            {name: form.cleaned_data.get(name) for name in EDITABLE}, article=obj if change else None
        )
        # The admin reads obj.pk to redirect and log; give it the row the service wrote.
        obj.pk = article.pk
        obj.refresh_from_db()

    def delete_model(self, request, obj):
        services.delete_article(obj)

    def delete_queryset(self, request, queryset):
        for article in queryset:
            services.delete_article(article)

    def changelist_view(self, request, extra_context=None):
        from .tasks import configured_embedder_version

        if request.method == "GET":
            try:
                status = indexing.reindex_status(configured_embedder_version())
            except Exception:  # a missing model must not break the list
                status = None
            if status and status["remaining"]:
                messages.info(
                    request,
                    format_html(
                        "Indexing: {} of {} articles current with {}; {} remaining, {} failed.",
                        status["current"],
                        status["articles"],
                        status["embedder_version"],
                        status["remaining"],
                        status["states"]["failed"],
                    ),
                )
        return super().changelist_view(request, extra_context)

    @admin.action(description="Re-index selected articles")
    def reindex_selected(self, request, queryset):
        ids = list(queryset.values_list("id", flat=True))
        Article.objects.filter(id__in=ids).update(index_state=Article.IndexState.PENDING, index_error="")
        for pk in ids:
            services.enqueue_index(pk)
        self.message_user(request, f"{len(ids)} article(s) queued for re-indexing.")

    @admin.action(description="Publish selected articles")
    def publish(self, request, queryset):
        for article in queryset:
            services.set_published(article, True)

    @admin.action(description="Unpublish selected articles (hide from suggestions)")
    def unpublish(self, request, queryset):
        for article in queryset:
            services.set_published(article, False)


@admin.register(Suggestion)
class SuggestionAdmin(admin.ModelAdmin):
    list_display = ["ticket", "rank", "article", "score", "created_at"]
    list_select_related = ["ticket", "article"]
    readonly_fields = ["ticket", "article", "passage", "passage_text", "score", "rank", "stage_scores", "created_at"]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(SuggestionFeedback)
class SuggestionFeedbackAdmin(admin.ModelAdmin):
    list_display = ["ticket", "article", "helpful", "rank", "agent", "created_at"]
    list_filter = ["helpful"]


@admin.register(FusionWeights)
class FusionWeightsAdmin(admin.ModelAdmin):
    list_display = ["__str__", "source", "n_queries", "created_at"]
    readonly_fields = [
        "weights",
        "source",
        "n_queries",
        "metrics",
        "embedder_version",
        "reranker_version",
        "created_by",
        "created_at",
    ]

    def has_add_permission(self, request) -> bool:
        return False

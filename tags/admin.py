"""Django admin for tag sets and tags; predictions and labels are read-only history.

Every rule of ``tags.services`` holds here too: a set keeps the tags its kind needs, names are unique
in a set (ignoring case), a set with labels keeps its kind, a tag with history is archived rather
than deleted, and threshold and notify changes leave a ``TagChange`` row.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet

from .models import Tag, TagChange, TagLabel, TagPrediction, TagSet
from .services import (
    archive_tag,
    check_kind_change,
    check_unique_tags,
    clean_tag_spec,
    min_tags,
    remove_tag,
    restore_tag,
    set_tag_notify,
    set_tag_threshold,
)


class TagSetForm(forms.ModelForm):
    class Meta:
        model = TagSet
        fields = ("name", "slug", "description", "kind", "method", "active")

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk and "kind" in cleaned:
            try:
                check_kind_change(TagSet.objects.get(pk=self.instance.pk), cleaned["kind"])
            except ValidationError as exc:
                self.add_error("kind", exc.message_dict.get("kind", exc.messages))
        return cleaned


class TagInlineFormSet(BaseInlineFormSet):
    """Across the rows: enough current tags for the kind, unique names and slugs, valid language codes."""

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        try:
            self._check_rows()
        except ValidationError as exc:
            raise ValidationError(exc.messages) from None  # a formset shows a list, not a field mapping

    def _check_rows(self) -> None:
        rows = [
            f.cleaned_data
            for f in self.forms
            if f.cleaned_data and not f.cleaned_data.get("DELETE") and not (f.instance.pk and f.instance.archived)
        ]
        method = self.instance.method or TagSet.Method.ZERO_SHOT
        specs = []
        for row in rows:
            spec = {k: row.get(k) for k in ("slug", "name", "description", "hypothesis")}
            specs.append(clean_tag_spec(spec, method=method))
        archived = (
            [{"slug": t.slug, "name": t.name} for t in self.instance.tags.exclude(archived_at=None)]
            if (self.instance.pk)
            else []
        )
        check_unique_tags(specs + archived)
        if len(specs) < min_tags(self.instance.kind):
            raise ValidationError(
                f"a {self.instance.kind}-label tag set needs at least {min_tags(self.instance.kind)} current tags"
            )


class TagInline(admin.TabularInline):
    model = Tag
    formset = TagInlineFormSet
    extra = 1
    can_delete = False  # removing a tag is the "archive" action: its history stays
    fields = ("name", "slug", "description", "hypothesis", "threshold", "notify", "archived_at")
    # Thresholds and notify change on the tag's page (or its list's actions), each change audited.
    readonly_fields = ("threshold", "notify", "archived_at")


class TagChangeInline(admin.TabularInline):
    model = TagChange
    fk_name = "tag_set"
    extra = 0
    can_delete = False
    fields = ("created_at", "tag", "user", "field", "before", "after", "reason")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(TagSet)
class TagSetAdmin(admin.ModelAdmin):
    form = TagSetForm
    list_display = ("name", "slug", "kind", "method", "active", "updated_at")
    list_filter = ("kind", "method", "active")
    search_fields = ("name", "slug", "description")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [TagInline, TagChangeInline]

    def save_model(self, request, obj: TagSet, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and "kind" in form.changed_data:
            TagChange.objects.create(
                tag_set=obj, user=request.user, field="kind", before=form.initial.get("kind", ""), after=obj.kind
            )


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    list_display = ("name", "tag_set", "slug", "threshold", "notify", "archived_at", "updated_at")
    list_filter = ("tag_set", "notify", ("archived_at", admin.EmptyFieldListFilter))
    search_fields = ("name", "slug", "description")
    fields = (
        "tag_set",
        "name",
        "slug",
        "description",
        "hypothesis",
        "threshold",
        "notify",
        "calibration",
        "archived_at",
    )
    readonly_fields = ("calibration", "archived_at")
    actions = ["archive_tags", "restore_tags", "notify_on", "notify_off"]

    def get_readonly_fields(self, request, obj=None):
        # A tag stays in its set: its labels mean something in that set only.
        return (*self.readonly_fields, "tag_set") if obj else self.readonly_fields

    def save_model(self, request, obj: Tag, form, change: bool) -> None:
        if not change:
            super().save_model(request, obj, form, change)
            return
        threshold, notify = obj.threshold, obj.notify
        stored = Tag.objects.get(pk=obj.pk)
        obj.threshold, obj.notify = stored.threshold, stored.notify  # set below, with their audit rows
        super().save_model(request, obj, form, change)
        set_tag_threshold(obj, threshold, user=request.user, reason="changed in the Django admin")
        set_tag_notify(obj, notify, user=request.user, reason="changed in the Django admin")

    def delete_model(self, request, obj: Tag) -> None:
        outcome = remove_tag(obj, user=request.user, reason="deleted in the Django admin")
        if outcome == "archived":
            messages.info(request, f"{obj.name} has predictions or labels: it was archived, its history kept.")

    @admin.action(description="Archive selected tags (history kept)")
    def archive_tags(self, request, queryset) -> None:
        for tag in queryset.select_related("tag_set"):
            try:
                archive_tag(tag, user=request.user, reason="archived in the Django admin")
            except ValidationError as exc:
                messages.error(request, f"{tag}: {' '.join(exc.messages)}")

    @admin.action(description="Restore selected tags")
    def restore_tags(self, request, queryset) -> None:
        for tag in queryset:
            restore_tag(tag, user=request.user, reason="restored in the Django admin")

    @admin.action(description="Notify automations when selected tags become set (ticket.tagged)")
    def notify_on(self, request, queryset) -> None:
        for tag in queryset:
            set_tag_notify(tag, True, user=request.user, reason="switched on in the Django admin")

    @admin.action(description="Stop notifying automations for selected tags")
    def notify_off(self, request, queryset) -> None:
        for tag in queryset:
            set_tag_notify(tag, False, user=request.user, reason="switched off in the Django admin")


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(TagPrediction)
class TagPredictionAdmin(ReadOnlyAdmin):
    list_display = ("ticket", "tag", "probability", "is_set", "threshold", "scorer", "calibration", "created_at")
    list_filter = ("tag__tag_set", "is_set", "scorer")
    raw_id_fields = ("ticket",)


@admin.register(TagLabel)
class TagLabelAdmin(ReadOnlyAdmin):
    list_display = ("ticket", "tag", "action", "agent", "source", "created_at")
    list_filter = ("tag__tag_set", "action", "source")
    raw_id_fields = ("ticket",)

"""Verb-named writes for tag sets, tags and tag labels, each validated in full before anything is stored.

``check_*`` functions raise ``ValidationError`` with a message a person can act on; the ``create_*``,
``set_*``, ``archive_*`` and ``record_*`` writes call them first and write in one transaction, so a
refused change stores nothing. Settings changes leave a ``TagChange`` audit row, as team changes do.

>>> urgency = create_tag_set("Urgency", kind="single", tags=[{"name": "low"}, {"name": "high"}])  # doctest: +SKIP
>>> record_tag_label(ticket, urgency.tags.get(slug="high"), "add", agent=alice)                  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from triage.models import Ticket
from triage.roles import is_admin
from triage.team_services import _clean_reason, _clean_threshold

from .models import DEFAULT_TAG_THRESHOLD, Tag, TagChange, TagLabel, TagPrediction, TagSet

TAG_FIELDS = ("slug", "name", "description", "hypothesis", "threshold", "notify")
NAME_MAX = Tag._meta.get_field("name").max_length
HYPOTHESIS_MAX = Tag._meta.get_field("hypothesis").max_length
DESCRIPTION_MAX = 2000


def min_tags(kind: str) -> int:
    """Tags a set needs: one for a multi-label set, two for a single-label one (one tag is no choice)."""
    return 2 if kind == TagSet.Kind.SINGLE else 1


def _check_admin(user: Any) -> None:
    # None is the system (a management command, the demo loader); a person must be an admin.
    if user is not None and not is_admin(user):
        raise PermissionDenied("only admins change tag sets and tags")


def _text(spec: Mapping[str, Any], field: str, limit: int, *, required: bool = False) -> str:
    value = spec.get(field, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValidationError({field: f"must be text, got {type(value).__name__}"})
    value = " ".join(value.split()) if field in ("name", "slug") else value.strip()
    if required and not value:
        raise ValidationError({field: "must not be empty"})
    if len(value) > limit:
        raise ValidationError({field: f"is {len(value)} characters long; the limit is {limit}"})
    return value


def _clean_notify(value: Any) -> bool:
    # A flag that sends webhooks is never guessed from text like "no" or "0": true or false only.
    if not isinstance(value, bool):
        raise ValidationError({"notify": f"must be true or false, got {value!r}"})
    return value


def clean_tag_spec(spec: Mapping[str, Any], *, method: str = TagSet.Method.ZERO_SHOT) -> dict[str, Any]:
    """A tag's fields from plain values: name required, slug from the name when missing, threshold in [0, 1]."""
    if not isinstance(spec, Mapping):
        raise ValidationError(f"a tag must be an object with a name, got {type(spec).__name__}")
    unknown = set(spec) - set(TAG_FIELDS)
    if unknown:
        raise ValidationError(f"unknown tag fields: {', '.join(sorted(unknown))} (known: {', '.join(TAG_FIELDS)})")
    name = _text(spec, "name", NAME_MAX, required=True)
    slug = slugify(_text(spec, "slug", 64) or name)
    if not slug:
        raise ValidationError({"slug": f"tag {name!r} needs a slug of letters, digits or dashes"})
    hypothesis = _text(spec, "hypothesis", HYPOTHESIS_MAX)
    threshold = spec.get("threshold")
    cleaned = {
        "slug": slug,
        "name": name,
        "description": _text(spec, "description", DESCRIPTION_MAX),
        "hypothesis": hypothesis,
        "threshold": DEFAULT_TAG_THRESHOLD if threshold is None else _clean_threshold(threshold),
        "notify": _clean_notify(spec.get("notify", False)),
    }
    if method == TagSet.Method.LANGUAGE:
        from mlops.inference.language import supported_language_codes

        if slug not in supported_language_codes():
            raise ValidationError(
                {"slug": f"tag {name!r}: a language tag's slug is an ISO 639-1 code the detector knows (en, de ...)"}
            )
    return cleaned


def check_tag_set(
    name: str, *, kind: str, method: str, tags: Iterable[Mapping[str, Any]], slug: str = ""
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The cleaned set and tags, or ``ValidationError``: unknown kind, too few tags, duplicate names."""
    if kind not in TagSet.Kind.values:
        raise ValidationError({"kind": f"must be one of {', '.join(TagSet.Kind.values)}, got {kind!r}"})
    if method not in TagSet.Method.values:
        raise ValidationError({"method": f"must be one of {', '.join(TagSet.Method.values)}, got {method!r}"})
    set_name = _text({"name": name}, "name", NAME_MAX, required=True)
    set_slug = slugify(slug or set_name)
    if not set_slug:
        raise ValidationError({"slug": f"tag set {set_name!r} needs a slug of letters, digits or dashes"})
    if TagSet.objects.filter(slug=set_slug).exists() or TagSet.objects.filter(name__iexact=set_name).exists():
        raise ValidationError({"name": f"a tag set {set_name!r} (or with slug {set_slug!r}) already exists"})
    if isinstance(tags, str | bytes | Mapping):
        raise ValidationError({"tags": "must be a list of tags"})
    cleaned = [clean_tag_spec(t, method=method) for t in tags]
    if len(cleaned) < min_tags(kind):
        raise ValidationError(
            {"tags": f"a {TagSet.Kind(kind).label.split(' (')[0].lower()} tag set needs at least {min_tags(kind)} tags"}
        )
    check_unique_tags(cleaned)
    return {"slug": set_slug, "name": set_name, "kind": kind, "method": method}, cleaned


def check_unique_tags(tags: Iterable[Mapping[str, Any]]) -> None:
    """Names and slugs are unique within a set, ignoring case (``Outage`` and ``outage`` are one tag)."""
    for field in ("slug", "name"):
        seen: set[str] = set()
        for t in tags:
            key = str(t[field]).casefold()
            if key in seen:
                message = f"two tags have the {field} {t[field]!r}; each must be unique in its set"
                raise ValidationError({"tags": message})
            seen.add(key)


@transaction.atomic
def create_tag_set(
    name: str,
    *,
    kind: str = TagSet.Kind.MULTI,
    method: str = TagSet.Method.ZERO_SHOT,
    tags: Iterable[Mapping[str, Any]],
    description: str = "",
    slug: str = "",
    user: Any = None,
) -> TagSet:
    """Create a tag set with its tags, all or nothing."""
    _check_admin(user)
    set_fields, tag_specs = check_tag_set(name, kind=kind, method=method, tags=list(tags), slug=slug)
    description = _text({"description": description}, "description", DESCRIPTION_MAX)
    tag_set = TagSet.objects.create(description=description, **set_fields)
    Tag.objects.bulk_create([Tag(tag_set=tag_set, **spec) for spec in tag_specs])
    TagChange.objects.create(tag_set=tag_set, user=user, field="created", after=f"{len(tag_specs)} tags")
    return tag_set


def check_new_tag(tag_set: TagSet, spec: Mapping[str, Any]) -> dict[str, Any]:
    cleaned = clean_tag_spec(spec, method=tag_set.method)
    for field in ("slug", "name"):
        clash = tag_set.tags.filter(**{f"{field}__iexact": cleaned[field]}).first()
        if clash is not None:
            hint = " (archived: restore it instead)" if clash.archived else ""
            raise ValidationError({field: f"tag set {tag_set.name!r} already has a tag {clash.name!r}{hint}"})
    return cleaned


@transaction.atomic
def add_tag(tag_set: TagSet, spec: Mapping[str, Any], *, user: Any = None) -> Tag:
    """Add one tag to a set (its name and slug must be new in the set, archived tags included)."""
    _check_admin(user)
    TagSet.objects.select_for_update().get(pk=tag_set.pk)
    tag = Tag.objects.create(tag_set=tag_set, **check_new_tag(tag_set, spec))
    TagChange.objects.create(tag_set=tag_set, tag=tag, user=user, field="added", after=tag.name)
    return tag


def check_archive_tag(tag: Tag) -> None:
    """A set keeps the tags its kind needs: archiving below that asks for archiving the set instead."""
    left = tag.tag_set.tags.current().exclude(pk=tag.pk).count()
    if left < min_tags(tag.tag_set.kind):
        raise ValidationError(
            f"tag set {tag.tag_set.name!r} would have {left} tag(s) left; a {tag.tag_set.kind}-label set needs "
            f"{min_tags(tag.tag_set.kind)}. Deactivate the tag set instead."
        )


@transaction.atomic
def archive_tag(tag: Tag, *, user: Any = None, reason: str = "") -> Tag:
    """Remove a tag from scoring and from agents' choices; its predictions and labels stay as history."""
    _check_admin(user)
    reason = _clean_reason(reason)
    locked = Tag.objects.select_for_update().select_related("tag_set").get(pk=tag.pk)
    if locked.archived:
        return locked
    check_archive_tag(locked)
    locked.archived_at = timezone.now()
    locked.save(update_fields=["archived_at", "updated_at"])
    TagChange.objects.create(tag_set=locked.tag_set, tag=locked, user=user, field="archived", reason=reason)
    return locked


@transaction.atomic
def restore_tag(tag: Tag, *, user: Any = None, reason: str = "") -> Tag:
    _check_admin(user)
    reason = _clean_reason(reason)
    locked = Tag.objects.select_for_update().get(pk=tag.pk)
    if locked.archived:
        locked.archived_at = None
        locked.save(update_fields=["archived_at", "updated_at"])
        TagChange.objects.create(tag_set=locked.tag_set, tag=locked, user=user, field="restored", reason=reason)
    return locked


def remove_tag(tag: Tag, *, user: Any = None, reason: str = "") -> str:
    """Delete a tag nothing refers to; archive one that predictions or labels refer to. Returns which."""
    _check_admin(user)
    with transaction.atomic():
        locked = Tag.objects.select_for_update().select_related("tag_set").get(pk=tag.pk)
        if locked.labels.exists() or locked.predictions.exists():
            archive_tag(locked, user=user, reason=reason or "removed with history: archived")
            return "archived"
        check_archive_tag(locked)
        TagChange.objects.create(tag_set=locked.tag_set, user=user, field="deleted", before=locked.name, reason=reason)
        locked.delete()
        return "deleted"


def check_kind_change(tag_set: TagSet, kind: str) -> None:
    """Refuse a switch between single- and multi-label once labels are recorded: they mean different things
    (a single-label "add" also says no other tag of the set fits)."""
    if kind not in TagSet.Kind.values:
        raise ValidationError({"kind": f"must be one of {', '.join(TagSet.Kind.values)}, got {kind!r}"})
    if kind == tag_set.kind or tag_set.pk is None:
        return
    labels = TagLabel.objects.filter(tag__tag_set=tag_set).count()
    if labels:
        raise ValidationError(
            {
                "kind": f"tag set {tag_set.name!r} has {labels} label(s) recorded as {tag_set.kind}-label; switching "
                "would change what they mean. Create a new tag set with the other kind instead."
            }
        )
    current = tag_set.tags.current().count()
    if current < min_tags(kind):
        message = f"a {kind}-label set needs {min_tags(kind)} tags; {tag_set.name!r} has {current}"
        raise ValidationError({"kind": message})


@transaction.atomic
def set_tag_set_kind(tag_set: TagSet, kind: str, *, user: Any = None, reason: str = "") -> TagSet:
    _check_admin(user)
    reason = _clean_reason(reason)
    locked = TagSet.objects.select_for_update().get(pk=tag_set.pk)
    check_kind_change(locked, kind)
    if kind != locked.kind:
        TagChange.objects.create(tag_set=locked, user=user, field="kind", before=locked.kind, after=kind, reason=reason)
        locked.kind = kind
        locked.save(update_fields=["kind", "updated_at"])
    tag_set.kind = locked.kind
    return locked


def _set_audited(locked: Tag, field: str, value: Any, *, user: Any, reason: str) -> None:
    """Set one setting of a tag locked for update, with its ``TagChange`` row; nothing when it is unchanged."""
    before = getattr(locked, field)
    if value == before:
        return
    TagChange.objects.create(
        tag_set_id=locked.tag_set_id,
        tag=locked,
        user=user,
        field=field,
        before=repr(before),
        after=repr(value),
        reason=reason,
    )
    setattr(locked, field, value)
    locked.save(update_fields=[field, "updated_at"])


@transaction.atomic
def set_tag_threshold(tag: Tag, threshold: Any, *, user: Any = None, reason: str = "") -> Tag:
    """Change a tag's threshold (audited); the next ticket scored uses it. An archived tag is not scored,
    so its threshold is refused (restore it first) rather than silently stored."""
    _check_admin(user)
    value, reason = _clean_threshold(threshold), _clean_reason(reason)
    locked = Tag.objects.select_for_update().select_related("tag_set").get(pk=tag.pk)
    if locked.archived:
        name = f"{locked.tag_set.name}: {locked.name}"
        raise ValidationError({"threshold": f"tag {name} is archived; restore it before changing its threshold"})
    _set_audited(locked, "threshold", value, user=user, reason=reason)
    tag.threshold = locked.threshold
    return locked


@transaction.atomic
def set_tag_notify(tag: Tag, notify: Any, *, user: Any = None, reason: str = "") -> Tag:
    """Choose whether automations hear when ``tag`` becomes set (the ``ticket.tagged`` webhook), audited.

    Admins choose per tag; nothing about a tag's slug or set decides it. Already-sent events stay sent;
    the next time the tag becomes set on a ticket the new choice applies."""
    _check_admin(user)
    value, reason = _clean_notify(notify), _clean_reason(reason)
    locked = Tag.objects.select_for_update().select_related("tag_set").get(pk=tag.pk)
    _set_audited(locked, "notify", value, user=user, reason=reason)
    tag.notify = locked.notify
    return locked


@transaction.atomic
def set_tag_calibration(tag: Tag, scorer: str, calibration: Mapping[str, Any], *, user: Any = None) -> Tag:
    """Store a scorer's calibration for a tag (``tags.calibration.TagCalibration.as_dict()``), audited."""
    _check_admin(user)
    if not scorer or not isinstance(calibration, Mapping) or calibration.get("method") != "logistic":
        raise ValidationError("a tag calibration is a fitted logistic calibration for a named scorer")
    locked = Tag.objects.select_for_update().get(pk=tag.pk)
    before = locked.calibration.get(scorer)
    locked.calibration = {**locked.calibration, scorer: dict(calibration)}
    locked.save(update_fields=["calibration", "updated_at"])
    TagChange.objects.create(
        tag_set_id=locked.tag_set_id,
        tag=locked,
        user=user,
        field="calibration",
        before=_short(before),
        after=_short(calibration),
        reason=f"{scorer}, fitted on {calibration.get('source', '?')} ({calibration.get('n', '?')} rows)",
    )
    tag.calibration = locked.calibration
    return locked


def check_tag_label(ticket: Ticket, tag: Tag, action: str, prediction: TagPrediction | None) -> None:
    if action not in TagLabel.Action.values:
        raise ValidationError({"action": f"must be add or remove, got {action!r}"})
    if tag.archived:
        raise ValidationError({"tag": f"tag {tag.name!r} was archived; it can no longer be added or removed"})
    if not tag.tag_set.active:
        raise ValidationError({"tag": f"tag set {tag.tag_set.name!r} is inactive"})
    if prediction is not None and (prediction.ticket_id != ticket.pk or prediction.tag_id != tag.pk):
        raise ValidationError({"prediction": "the prediction answered is not this ticket's prediction of this tag"})


@transaction.atomic
def record_tag_label(
    ticket: Ticket,
    tag: Tag,
    action: str,
    *,
    agent: Any = None,
    prediction: TagPrediction | None = None,
    source: str = "dashboard",
) -> TagLabel:
    """An agent adds or removes a tag; the label answers the ticket's latest prediction of it unless told."""
    check_tag_label(ticket, tag, action, prediction)
    if prediction is None:
        prediction = TagPrediction.objects.filter(ticket=ticket, tag=tag).order_by("-created_at", "-id").first()
    return TagLabel.objects.create(
        ticket=ticket, tag=tag, action=action, prediction=prediction, agent=agent, source=source
    )


def _short(value: Any, limit: int = 500) -> str:
    text = "" if value is None else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"

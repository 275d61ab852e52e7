from __future__ import annotations

import json
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.db import transaction

from config.commands import DatabaseCommand
from tags.models import TagSet
from tags.scoring import DEMO_TAG_SETS
from tags.services import add_tag, create_tag_set, set_tag_calibration


class Command(DatabaseCommand):
    help = (
        "Load tag sets from a JSON file (default: the demo's urgency, sentiment, language and topics). "
        "Safe to run again: existing sets and tags are kept as they are, missing tags are added."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", nargs="?", default=str(DEMO_TAG_SETS))

    def handle(self, *args, file: str, **options):
        try:
            specs = json.loads(Path(file).read_text())
        except (OSError, ValueError) as exc:
            raise CommandError(f"cannot read tag sets from {file}: {exc}") from None
        if not isinstance(specs, list):
            raise CommandError(f"{file}: expected a list of tag sets")
        try:
            with transaction.atomic():
                for spec in specs:
                    self.stdout.write(self._load(spec))
        except ValidationError as exc:
            raise CommandError(f"{file}: {'; '.join(exc.messages)} (nothing was stored)") from None

    def _load(self, spec: dict) -> str:
        tags = spec.get("tags") or []
        calibrations = {t.get("slug") or t.get("name"): t.pop("calibration", {}) for t in tags if isinstance(t, dict)}
        existing = TagSet.objects.filter(slug=spec.get("slug", "")).first()
        if existing is None:
            tag_set = create_tag_set(
                spec.get("name", ""),
                slug=spec.get("slug", ""),
                kind=spec.get("kind", TagSet.Kind.MULTI),
                method=spec.get("method", TagSet.Method.ZERO_SHOT),
                description=spec.get("description", ""),
                tags=tags,
            )
            added = len(tags)
        else:
            tag_set, added = existing, 0
            have = {t.slug for t in tag_set.tags.all()}
            for tag in tags:
                if tag.get("slug") not in have:
                    add_tag(tag_set, tag)
                    added += 1
        # Shipped calibrations (fitted on the evaluation set's dev split) for tags that have none yet.
        for tag in tag_set.tags.all():
            for scorer, calibration in (calibrations.get(tag.slug) or {}).items():
                if scorer not in tag.calibration:
                    set_tag_calibration(tag, scorer, calibration)
        return f"tag set {tag_set.slug}: {tag_set.tags.count()} tags ({added} added)"

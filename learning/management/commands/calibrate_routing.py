"""Fit the champion's temperature and propose per-team thresholds from agents' labels.

    python manage.py calibrate_routing [--model-version ID] [--target-precision 0.9] [--mode precision|f1]
                                       [--rescore] [--apply]

Labels are the latest ``triage.Correction`` of each ticket (accepted, corrected, reassigned or
imported). The scores are those the version stored when it routed the tickets, or with
``--rescore`` fresh ones over today's teams (also for labeled tickets it never routed). The fitted
temperature is stored on the version and applies to the next ticket routed; the thresholds are
stored on the version as proposals (``ModelVersion.thresholds``) and written to the teams only with
``--apply`` (each change audited as a ``TeamChange``).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser

from config.commands import DatabaseCommand
from mlops.calibration import MIN_THRESHOLD_SUPPORT


class Command(DatabaseCommand):
    help = "Fit temperature scaling and per-team thresholds for the champion model version from recorded labels."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model-version", type=int, help="ModelVersion id (default: the champion)")
        parser.add_argument("--target-precision", type=float, default=None, help="default TRIAGE_TARGET_PRECISION")
        parser.add_argument("--mode", choices=("precision", "f1"), default="precision")
        parser.add_argument(
            "--min-support",
            type=int,
            default=MIN_THRESHOLD_SUPPORT,
            help="labeled tickets a team threshold rests on",
        )
        parser.add_argument("--min-labels", type=int, default=20, help="refuse to fit on fewer labeled tickets")
        parser.add_argument("--rescore", action="store_true", help="score the labeled tickets again")
        parser.add_argument("--apply", action="store_true", help="write the proposed thresholds to the teams")

    def handle(self, *args: Any, **opts: Any) -> None:
        from learning.calibrate import calibrate_version
        from mlops.models import ModelVersion

        if opts["target_precision"] is not None and not 0.0 < opts["target_precision"] <= 1.0:
            raise CommandError("--target-precision must be in (0, 1]")
        if opts["model_version"]:
            version = ModelVersion.objects.filter(pk=opts["model_version"]).first()
            if version is None:
                raise CommandError(f"no model version with id {opts['model_version']}")
        else:
            version = ModelVersion.objects.champion()
            if version is None:
                raise CommandError(
                    "there is no champion model version yet: route a ticket first, or pass --model-version"
                )
        try:
            result = calibrate_version(
                version,
                target_precision=opts["target_precision"],
                mode=opts["mode"],
                min_support=opts["min_support"],
                rescore=opts["rescore"],
                min_labels=opts["min_labels"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None

        d = result.details
        cal = result.calibration
        self.stdout.write(f"{version} (id {version.pk}): {result.n} labeled tickets, {result.skipped} skipped")
        self.stdout.write(
            f"temperature {cal['temperature']:.3f}: NLL {cal['nll_before']:.4f} -> {cal['nll_after']:.4f}, "
            f"ECE {cal['ece_before']:.4f} -> {cal['ece_after']:.4f}; accuracy {d['accuracy']:.1%}"
        )
        self.stdout.write(f"thresholds ({d['threshold_mode']}, target precision {d['target_precision']:.0%}):")
        for slug, threshold in sorted(result.thresholds.items()):
            source = d["per_team"].get(slug, {}).get("source", "pooled")
            self.stdout.write(f"  {slug:<40} {threshold:.4f}  ({source})")
        if opts["apply"]:
            self.apply(result.thresholds)
        else:
            self.stdout.write("proposals stored on the version; run with --apply to set them on the teams")

    def apply(self, thresholds: dict[str, float]) -> None:
        from triage.models import Team
        from triage.team_services import set_routing_for_teams

        teams = {t.slug: t for t in Team.objects.filter(slug__in=thresholds)}
        try:
            changes = set_routing_for_teams(
                {team: {"threshold": thresholds[slug]} for slug, team in teams.items()},
                user=None,
                reason="calibrate_routing proposal",
            )
        except ValidationError as exc:
            raise CommandError(f"thresholds not applied: {'; '.join(exc.messages)}") from None
        self.stdout.write(f"applied: {len(changes)} team thresholds changed")

from __future__ import annotations

import json
import os
from pathlib import Path

from django.core.management.base import CommandError
from django.db.models import Q

from config.commands import DatabaseCommand
from tags.evaluation import EvaluationInputError, evaluate, read_labelled
from tags.models import TagSet
from tags.scoring import TagSetSpec

SCORER_CHOICES = ("auto", "nli", "embedding", "cross-encoder", "ensemble", "all")


class Command(DatabaseCommand):
    help = (
        'Evaluate a tag set on labelled tickets (JSONL lines {"text": ..., "tags": [...]}): per-tag precision, '
        "recall, F1, ECE before and after calibration, coverage at precision 0.9, micro/macro-F1. With --dev, "
        "calibrations and thresholds are fitted on dev and applied to test; otherwise the stored ones are used."
    )

    def add_arguments(self, parser):
        parser.add_argument("--test", required=True, help="labelled tickets to report on")
        parser.add_argument("--tagset", required=True, help="tag set name or slug")
        parser.add_argument("--dev", help="labelled tickets to fit calibrations and thresholds on")
        parser.add_argument("--scorer", default="auto", choices=SCORER_CHOICES, help="zero-shot scorer (all: each)")
        parser.add_argument("--target-precision", type=float, default=0.9)
        parser.add_argument("--json", dest="json_out", help="write the report(s) here")

    def handle(self, *args, test, tagset, dev, scorer, target_precision, json_out, **options):
        if not 0.0 < target_precision <= 1.0:
            raise CommandError("--target-precision must be in (0, 1]")
        row = TagSet.objects.scorable().filter(Q(slug=tagset) | Q(name__iexact=tagset)).first()
        if row is None:
            known = ", ".join(TagSet.objects.values_list("slug", flat=True)) or "none: run load_tag_sets"
            raise CommandError(f"no active tag set {tagset!r} (known: {known})")
        spec = TagSetSpec.from_row(row)
        if not spec.tags:
            raise CommandError(f"tag set {spec.slug!r} has no current tags")
        try:
            test_rows = read_labelled(test, spec)
            dev_rows = read_labelled(dev, spec) if dev else None
        except EvaluationInputError as exc:
            raise CommandError(str(exc)) from None
        reports = []
        for name in self._scorers(spec, scorer):
            try:
                instance = None if spec.method == "language" else self._load(name)
            except Exception as exc:  # a scorer that cannot load here is reported, not fatal
                reports.append({"tag_set": spec.slug, "scorer": name, "unavailable": str(exc)})
                self.stdout.write(f"{name}: unavailable ({exc})")
                continue
            report = evaluate(spec, test_rows, instance, dev=dev_rows, target_precision=target_precision)
            report["load_average"] = list(os.getloadavg())
            reports.append(report)
            self._print(report)
        if json_out:
            Path(json_out).write_text(json.dumps(reports if len(reports) > 1 else reports[0], indent=2) + "\n")
            self.stdout.write(f"wrote {json_out}")

    def _scorers(self, spec: TagSetSpec, requested: str) -> list[str]:
        if spec.method == "language":
            return ["language"]
        return ["nli", "ensemble", "embedding", "cross-encoder"] if requested == "all" else [requested]

    def _load(self, name: str):
        from mlops.inference.registry import get_scorer
        from tags.scoring import zero_shot_scorer

        return zero_shot_scorer() if name == "auto" else get_scorer(name)

    def _print(self, r: dict) -> None:
        self.stdout.write(
            f"{r['tag_set']} / {r['scorer']} (calibration: {r['calibration']}; test {r['n_test']}, dev {r['n_dev']})"
        )
        self.stdout.write(f"  {'tag':<16}{'P':>6}{'R':>6}{'F1':>6}{'ECE0':>7}{'ECE':>7}{'cov@.9':>8}{'thr':>6}")
        for slug, t in r["tags"].items():
            ece = "   -  " if t["ece_after"] is None else f"{t['ece_after']:7.3f}"
            threshold = "  -  " if t["threshold"] is None else f"{t['threshold']:6.2f}"
            self.stdout.write(
                f"  {slug:<16}{t['precision']:6.2f}{t['recall']:6.2f}{t['f1']:6.2f}{t['ece_before'] or 0:7.3f}{ece}"
                f"{t['coverage_at_precision_0.9']:8.2f}{threshold}"
            )
        extra = f", accuracy {r['accuracy']:.3f}" if "accuracy" in r else ""
        self.stdout.write(
            f"  micro-F1 {r['micro_f1']:.3f}, macro-F1 {r['macro_f1']:.3f} "
            f"(before calibration {r['macro_f1_before_calibration']:.3f}){extra}"
        )

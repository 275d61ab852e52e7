"""Evaluate a routing scorer on labeled tickets: ``text<TAB>label`` files, e.g. Banking77.

    python manage.py evaluate_routing --test test.tsv [--dev dev.tsv] [--train train.tsv] \\
        [--scorer ensemble] [--descriptions mlops/eval_data/banking77_descriptions.tsv] [--json out.json]

Zero-shot: the scorer sees only the class names (labels such as ``card_arrival`` read as "card
arrival") and, with ``--descriptions``, a description per class. Labeled data is used only to
calibrate: the temperature and the per-class thresholds are fitted on ``--dev`` (or on ``--train``
when there is no dev file) and measured on ``--test``. ``--examples-per-class N`` additionally gives
the scorer N example tickets per class from ``--train`` (few-shot; off by default).

Reports accuracy, macro-F1, balanced accuracy, ECE before and after calibration, coverage at 90 %
and 95 % precision, what the dev-chosen thresholds do on test, per-class precision/recall, the
scorer and its model version, and throughput.
"""

from __future__ import annotations

import csv
import json
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

TARGET_PRECISIONS = (0.9, 0.95)
CHUNK = 256


def read_labeled_tsv(path: str | Path) -> tuple[list[str], list[str]]:
    """Texts and labels of a ``text<TAB>label`` file with that header (quoted fields allowed)."""
    path = Path(path)
    if not path.is_file():
        raise CommandError(f"{path}: no such file")
    try:
        handle = path.open(encoding="utf-8", newline="")
        reader = csv.reader(handle, dialect="excel-tab")
        header = next(reader, None)
    except UnicodeDecodeError as exc:
        raise CommandError(f"{path}: not UTF-8 text ({exc})") from None
    with handle:
        if header is None:
            raise CommandError(f"{path}: the file is empty; expected a header line 'text<TAB>label'")
        if [h.strip().lower() for h in header[:2]] != ["text", "label"]:
            raise CommandError(f"{path}: the header must be 'text<TAB>label', got {header!r}")
        texts: list[str] = []
        labels: list[str] = []
        try:
            for row in reader:
                line = reader.line_num
                if not row or all(not cell.strip() for cell in row):
                    continue
                if len(row) < 2:
                    raise CommandError(f"{path}: line {line}: expected 'text<TAB>label', got {len(row)} column(s)")
                text, label = row[0].strip(), row[1].strip()
                if not text:
                    raise CommandError(f"{path}: line {line}: empty text")
                if not label:
                    raise CommandError(f"{path}: line {line}: empty label")
                texts.append(text)
                labels.append(label)
        except UnicodeDecodeError as exc:
            raise CommandError(f"{path}: not UTF-8 text ({exc})") from None
        except csv.Error as exc:
            raise CommandError(f"{path}: line {reader.line_num}: {exc}") from None
    if not texts:
        raise CommandError(f"{path}: no rows after the header")
    return texts, labels


def read_descriptions(path: str | Path) -> dict[str, tuple[str, str]]:
    """``label<TAB>description[<TAB>hypothesis]`` per line (a ``label<TAB>description`` header is optional)."""
    path = Path(path)
    if not path.is_file():
        raise CommandError(f"{path}: no such file")
    out: dict[str, tuple[str, str]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, dialect="excel-tab")
        for row in reader:
            if not row or not row[0].strip() or row[0].startswith("#"):
                continue
            if reader.line_num == 1 and [c.strip().lower() for c in row[:2]] == ["label", "description"]:
                continue
            if len(row) < 2 or not row[1].strip():
                raise CommandError(f"{path}: line {reader.line_num}: expected 'label<TAB>description'")
            label = row[0].strip()
            if label in out:
                raise CommandError(f"{path}: line {reader.line_num}: label {label!r} is described twice")
            out[label] = (row[1].strip(), row[2].strip() if len(row) > 2 else "")
    return out


def _parse_option(raw: str) -> tuple[str, Any]:
    key, sep, value = raw.partition("=")
    if not sep or not key.strip():
        raise CommandError(f"--set expects KEY=VALUE, got {raw!r}")
    try:
        parsed: Any = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip(), parsed


def _round(value: Any, digits: int = 4) -> Any:
    if isinstance(value, float):
        return None if np.isnan(value) else round(value, digits)
    if isinstance(value, dict):
        return {k: _round(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v, digits) for v in value]
    return value


class Command(BaseCommand):
    help = "Evaluate a routing scorer (zero-shot, calibrated on dev) on a text<TAB>label file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--test", required=True, help="text<TAB>label file to measure on")
        parser.add_argument("--dev", help="labeled file for calibration (temperature and thresholds)")
        parser.add_argument("--train", help="labeled file: calibration when there is no --dev; examples")
        parser.add_argument(
            "--scorer",
            default=None,
            help="nli, embedding, cross-encoder, ensemble or auto (default: TRIAGE_ROUTING_SCORER)",
        )
        parser.add_argument("--descriptions", help="label<TAB>description[<TAB>hypothesis] file")
        parser.add_argument("--json", dest="json_out", help="write the results as JSON here")
        parser.add_argument("--template", default=None, help="NLI hypothesis template (default: the setting)")
        parser.add_argument("--target-precision", type=float, default=None, help="for per-class thresholds")
        parser.add_argument("--threshold-mode", choices=("precision", "f1"), default="precision")
        parser.add_argument("--examples-per-class", type=int, default=0, help="few-shot examples from --train")
        parser.add_argument("--limit", type=int, default=0, help="evaluate on a random sample of N test rows")
        parser.add_argument(
            "--calibration-limit", type=int, default=2000, help="at most this many calibration rows (sampled)"
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--set", dest="options", action="append", default=[], help="scorer option KEY=VALUE (e.g. ce_weight=0.4)"
        )

    # --- set-up ---------------------------------------------------------------------------------
    def build_scorer(self, name: str, options: dict[str, Any], template: str | None):
        from mlops.inference import registry
        from mlops.inference.encoders import ModelUnavailable

        fallback = ""
        try:
            if name == "auto":
                choice = registry.resolve_scorer("auto")
                scorer, fallback = choice.scorer, choice.fallback_reason
            elif name == "nli" and (options or template):
                from mlops.inference.nli import NLIScorer

                scorer = NLIScorer(
                    settings.TRIAGE_NLI_MODEL, template=template or settings.TRIAGE_HYPOTHESIS_TEMPLATE, **options
                )
            elif options:
                scorer = self._scorer_with_options(name, options)
            else:
                scorer = registry.get_scorer(name)
        except KeyError as exc:
            raise CommandError(str(exc).strip("'\"")) from None
        except ModelUnavailable as exc:
            raise CommandError(
                f"{exc}. Use --scorer embedding, cross-encoder or ensemble to evaluate offline."
            ) from None
        except (TypeError, ValueError) as exc:
            raise CommandError(f"bad scorer option: {exc}") from None
        return scorer, fallback

    def _scorer_with_options(self, name: str, options: dict[str, Any]):
        from mlops.inference import registry
        from mlops.inference.offline_scorers import CrossEncoderScorer, EmbeddingScorer, EnsembleScorer

        if name == "embedding":
            return EmbeddingScorer(**options)
        if name == "cross-encoder":
            return CrossEncoderScorer(**options)
        if name == "ensemble":
            emb_opts = {k[4:]: v for k, v in options.items() if k.startswith("emb_")}
            own = {k: v for k, v in options.items() if not k.startswith("emb_")}
            embedding = EmbeddingScorer(**emb_opts) if emb_opts else registry.get_scorer("embedding")
            return EnsembleScorer(embedding, registry.get_scorer("cross-encoder"), **own)
        raise CommandError(f"--set is not supported for scorer {name!r}")

    def log(self, message: str) -> None:
        self.stderr.write(message)

    def score(self, scorer, texts: list[str], classes) -> tuple[np.ndarray, float]:
        started = time.perf_counter()
        parts = []
        for start in range(0, len(texts), CHUNK):
            parts.append(scorer.logits(texts[start : start + CHUNK], classes))
            done = min(start + CHUNK, len(texts))
            if len(texts) > CHUNK:
                rate = done / (time.perf_counter() - started)
                self.log(f"  scored {done}/{len(texts)} ({rate:.1f} tickets/s)")
        return np.vstack(parts), time.perf_counter() - started

    # --- run ------------------------------------------------------------------------------------
    def handle(self, *args: Any, **opts: Any) -> None:
        from mlops.calibration import (
            classification_report,
            coverage_at_precision,
            evaluate_thresholds,
            expected_calibration_error,
            fit_calibration,
            softmax,
        )
        from mlops.inference.scorers import ClassSpec, InvalidInput, validate_template

        rng = random.Random(opts["seed"])
        test_texts, test_labels = read_labeled_tsv(opts["test"])
        dev = read_labeled_tsv(opts["dev"]) if opts["dev"] else None
        train = read_labeled_tsv(opts["train"]) if opts["train"] else None
        if opts["examples_per_class"] and train is None:
            raise CommandError("--examples-per-class needs --train")
        if opts["limit"] and opts["limit"] < len(test_texts):
            keep = sorted(rng.sample(range(len(test_texts)), opts["limit"]))
            test_texts, test_labels = [test_texts[i] for i in keep], [test_labels[i] for i in keep]
        if opts["template"]:
            try:
                validate_template(opts["template"])
            except InvalidInput as exc:
                raise CommandError(str(exc)) from None

        labels = sorted(set(test_labels) | set(dev[1] if dev else []) | set(train[1] if train else []))
        descriptions = read_descriptions(opts["descriptions"]) if opts["descriptions"] else {}
        unknown = sorted(set(descriptions) - set(labels))
        if unknown:
            self.log(f"warning: descriptions for labels not in the data: {', '.join(unknown[:10])}")
        undescribed = [label for label in labels if label not in descriptions]
        if descriptions and undescribed:
            self.log(f"warning: {len(undescribed)} labels have no description: {', '.join(undescribed[:10])}")
        examples: dict[str, tuple[str, ...]] = {}
        if opts["examples_per_class"] and train is not None:
            by_label: dict[str, list[str]] = defaultdict(list)
            for text, label in zip(*train, strict=True):
                by_label[label].append(text)
            for label, texts in by_label.items():
                examples[label] = tuple(rng.sample(texts, min(opts["examples_per_class"], len(texts))))
        try:
            classes = [
                ClassSpec.from_label(
                    label,
                    descriptions.get(label, ("", ""))[0],
                    hypothesis=descriptions.get(label, ("", ""))[1],
                    examples=examples.get(label, ()),
                )
                for label in labels
            ]
        except InvalidInput as exc:
            raise CommandError(f"bad class: {exc}") from None
        index = {label: i for i, label in enumerate(labels)}

        name = opts["scorer"] or settings.TRIAGE_ROUTING_SCORER or "auto"
        options = dict(_parse_option(raw) for raw in opts["options"])
        load_started = time.perf_counter()
        scorer, fallback = self.build_scorer(name, options, opts["template"])
        load_seconds = time.perf_counter() - load_started
        if fallback:
            self.log(f"{fallback}; evaluating {scorer.name}")
        self.log(f"scorer {scorer.name} ({scorer.version}); {len(test_texts)} test tickets, {len(classes)} classes")

        try:
            test_logits, seconds = self.score(scorer, test_texts, classes)
            y_test = np.array([index[label] for label in test_labels])
            calibration_set = dev or train
            calibration_name = "dev" if dev else ("train" if train else None)
            cal: dict[str, Any] = {"method": "none"}
            temperature = None
            thresholds = None
            if calibration_set is not None:
                cal_texts, cal_labels = calibration_set
                if len(cal_texts) > opts["calibration_limit"] > 0:
                    keep = sorted(rng.sample(range(len(cal_texts)), opts["calibration_limit"]))
                    cal_texts, cal_labels = [cal_texts[i] for i in keep], [cal_labels[i] for i in keep]
                self.log(f"calibrating on {calibration_name}: {len(cal_texts)} tickets")
                cal_logits, _ = self.score(scorer, cal_texts, classes)
                y_cal = np.array([index[label] for label in cal_labels])
                fitted = fit_calibration(
                    cal_logits,
                    y_cal,
                    labels,
                    target_precision=opts["target_precision"] or settings.TRIAGE_TARGET_PRECISION,
                    mode=opts["threshold_mode"],
                )
                temperature, thresholds = fitted.temperature, fitted.thresholds
                cal = {**fitted.as_dict(), "split": calibration_name}
        except InvalidInput as exc:
            raise CommandError(str(exc)) from None

        raw_probs = softmax(test_logits)
        report = classification_report(y_test, raw_probs.argmax(axis=1), labels)
        result: dict[str, Any] = {
            "scorer": scorer.name,
            "model_ref": scorer.model_ref,
            "model_version": scorer.version,
            "scorer_config": scorer.describe(),
            "fallback_reason": fallback,
            "test_file": str(opts["test"]),
            "n_test": len(test_texts),
            "n_classes": len(labels),
            "descriptions": str(opts["descriptions"]) if opts["descriptions"] else None,
            "examples_per_class": opts["examples_per_class"],
            "accuracy": report["accuracy"],
            "macro_f1": report["macro_f1"],
            "balanced_accuracy": report["balanced_accuracy"],
            "ece_raw": expected_calibration_error(raw_probs, y_test),
            "ece_calibrated": None,
            "calibration": cal,
        }
        probs = raw_probs
        if temperature is not None:
            probs = softmax(test_logits, temperature)
            result["ece_calibrated"] = expected_calibration_error(probs, y_test)
        correct = probs.argmax(axis=1) == y_test
        confidence = probs.max(axis=1)
        details = {str(p): coverage_at_precision(confidence, correct, p) for p in TARGET_PRECISIONS}
        result["coverage_at_precision"] = {p: d["coverage"] for p, d in details.items()}
        result["coverage_at_precision_details"] = details
        if thresholds is not None:
            result["thresholds"] = {
                "mode": thresholds.mode,
                "target_precision": thresholds.target_precision,
                "fallback": thresholds.fallback,
                "per_class": thresholds.per_class,
                "on_test": evaluate_thresholds(probs, y_test, labels, thresholds),
            }
        result["per_class"] = report["per_class"]
        result["seconds"] = seconds
        result["load_seconds"] = load_seconds
        result["tickets_per_second"] = len(test_texts) / seconds if seconds > 0 else None
        result["label_counts"] = dict(Counter(test_labels))
        result = _round(result)

        self.print_table(result)
        if opts["json_out"]:
            out = Path(opts["json_out"])
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n", encoding="utf-8")
            self.log(f"wrote {out}")

    def print_table(self, r: dict[str, Any]) -> None:
        def pct(v: Any) -> str:
            return "-" if v is None else f"{100 * v:.1f} %"

        def num(v: Any) -> str:
            return "-" if v is None else f"{v:.4f}"

        cal = r["calibration"]
        fitted = f"  (T = {cal['temperature']:.3f} fitted on {cal['split']}, n = {cal['n']})" if cal.get("n") else ""
        rows = [
            ("scorer", f"{r['scorer']}  ({r['model_version']})"),
            ("test", f"{r['test_file']}: {r['n_test']} tickets, {r['n_classes']} classes"),
            ("accuracy", pct(r["accuracy"])),
            ("macro F1", pct(r["macro_f1"])),
            ("balanced accuracy", pct(r["balanced_accuracy"])),
            ("ECE raw", num(r["ece_raw"])),
            ("ECE calibrated", num(r["ece_calibrated"]) + fitted),
        ]
        for p, d in r["coverage_at_precision_details"].items():
            rows.append(
                (f"coverage @ {float(p):.0%} precision", f"{pct(d['coverage'])}  (threshold {num(d['threshold'])})")
            )
        if "thresholds" in r:
            on_test = r["thresholds"]["on_test"]
            rows.append(
                (
                    f"{cal['split']} thresholds on test",
                    f"{pct(on_test['auto_routed'])} auto-routed at {pct(on_test['auto_precision'])} precision "
                    f"(target {pct(r['thresholds']['target_precision'])})",
                )
            )
        rows.append(("throughput", f"{r['tickets_per_second']:.1f} tickets/s ({r['seconds']:.0f} s)"))
        width = max(len(k) for k, _ in rows)
        out = sys.stdout if self.stdout is None else self.stdout
        for key, value in rows:
            out.write(f"{key:<{width}}  {value}")
        out.write("")
        out.write(f"{'class':<50} {'prec':>6} {'recall':>6} {'f1':>6} {'n':>5}")
        for slug, m in sorted(r["per_class"].items(), key=lambda item: item[1]["f1"]):
            out.write(f"{slug[:50]:<50} {m['precision']:>6.3f} {m['recall']:>6.3f} {m['f1']:>6.3f} {m['support']:>5}")

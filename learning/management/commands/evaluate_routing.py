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

from learning.routing_files import read_descriptions, read_labeled_tsv, read_unlabeled_texts

TARGET_PRECISIONS = (0.9, 0.95)
CHUNK = 256


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
        parser.add_argument(
            "--unlabeled",
            help="text[<TAB>label] file of unlabeled tickets to self-train on (a label column is never read)",
        )
        parser.add_argument(
            "--unlabeled-limit", type=int, default=5000, help="self-train on the first N unlabeled tickets (0: all)"
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
        y_test = np.array([index[label] for label in test_labels])
        calibration_set = dev or train
        calibration_name = "dev" if dev else ("train" if train else None)
        if calibration_set is not None and len(calibration_set[0]) > opts["calibration_limit"] > 0:
            keep = sorted(rng.sample(range(len(calibration_set[0])), opts["calibration_limit"]))
            calibration_set = ([calibration_set[0][i] for i in keep], [calibration_set[1][i] for i in keep])
        unlabeled = read_unlabeled_texts(opts["unlabeled"], opts["unlabeled_limit"]) if opts["unlabeled"] else None

        name = opts["scorer"] or settings.TRIAGE_ROUTING_SCORER or "auto"
        options = dict(_parse_option(raw) for raw in opts["options"])
        load_started = time.perf_counter()
        scorer, fallback = self.build_scorer(name, options, opts["template"])
        load_seconds = time.perf_counter() - load_started
        if fallback:
            self.log(f"{fallback}; evaluating {scorer.name}")
        self.log(f"scorer {scorer.name} ({scorer.version}); {len(test_texts)} test tickets, {len(classes)} classes")

        def measure(model) -> dict[str, Any]:
            try:
                return self.measure(model, classes, labels, test_texts, y_test, calibration_set, calibration_name, opts)
            except InvalidInput as exc:
                raise CommandError(str(exc)) from None

        zero_shot = measure(scorer)
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
            **zero_shot,
            "load_seconds": load_seconds,
            "label_counts": dict(Counter(test_labels)),
        }
        if unlabeled is not None:
            result.update(self.self_trained(unlabeled, classes, zero_shot, measure), zero_shot_scorer=scorer.name)
        result = _round(result)

        self.print_table(result)
        if opts["json_out"]:
            out = Path(opts["json_out"])
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n", encoding="utf-8")
            self.log(f"wrote {out}")

    def measure(
        self,
        scorer,
        classes: list,
        labels: list[str],
        test_texts: list[str],
        y_test: np.ndarray,
        calibration_set: tuple[list[str], list[str]] | None,
        calibration_name: str | None,
        opts: dict[str, Any],
    ) -> dict[str, Any]:
        """Accuracy, calibration and coverage of one scorer on the test file (calibrated on dev or train)."""
        from mlops.calibration import (
            classification_report,
            coverage_at_precision,
            evaluate_thresholds,
            expected_calibration_error,
            fit_calibration,
            softmax,
        )

        test_logits, seconds = self.score(scorer, test_texts, classes)
        cal: dict[str, Any] = {"method": "none"}
        temperature = thresholds = None
        if calibration_set is not None:
            cal_texts, cal_labels = calibration_set
            self.log(f"calibrating on {calibration_name}: {len(cal_texts)} tickets")
            cal_logits, _ = self.score(scorer, cal_texts, classes)
            index = {label: i for i, label in enumerate(labels)}
            fitted = fit_calibration(
                cal_logits,
                np.array([index[label] for label in cal_labels]),
                labels,
                target_precision=opts["target_precision"] or settings.TRIAGE_TARGET_PRECISION,
                mode=opts["threshold_mode"],
            )
            temperature, thresholds = fitted.temperature, fitted.thresholds
            cal = {**fitted.as_dict(), "split": calibration_name}
        raw_probs = softmax(test_logits)
        report = classification_report(y_test, raw_probs.argmax(axis=1), labels)
        result: dict[str, Any] = {
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
        result["tickets_per_second"] = len(test_texts) / seconds if seconds > 0 else None
        return result

    def self_trained(self, unlabeled: list[str], classes: list, zero_shot: dict[str, Any], measure) -> dict[str, Any]:
        """Self-train on the unlabeled texts and measure the result; the zero-shot figures stay beside it.

        When the stream cannot train a model (too few distinct tickets, another language), the report
        says why and the figures are the zero-shot scorer's: it is what keeps serving.
        """
        from mlops.inference.selftrain import self_train
        from mlops.selftraining import SelfTrainingError

        self.log(f"self-training on {len(unlabeled)} unlabeled tickets (their labels, if any, are not read)")
        started, cpu = time.perf_counter(), time.process_time()
        try:
            model, report = self_train(unlabeled, classes)
        except SelfTrainingError as exc:
            self.log(f"self-training refused: {exc}; the zero-shot scorer keeps routing")
            return {
                "accuracy_zero_shot": zero_shot["accuracy"],
                "macro_f1_zero_shot": zero_shot["macro_f1"],
                "self_training": {"refused": str(exc), "n_unlabeled": len(unlabeled)},
            }
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
        if report.starved:
            starved = ", ".join(report.starved[:10])
            self.log(f"warning: {len(report.starved)} classes had almost no confident tickets: {starved}")
        self.log(f"self-trained in {seconds:.0f} s ({cpu_seconds:.0f} s CPU); {report.n_pseudo_labels} pseudo-labels")
        trained = measure(model)
        return {
            **trained,
            "scorer": model.name,
            "model_ref": model.model_ref,
            "model_version": model.version,
            "accuracy_zero_shot": zero_shot["accuracy"],
            "macro_f1_zero_shot": zero_shot["macro_f1"],
            "zero_shot": {k: v for k, v in zero_shot.items() if k not in ("per_class", "thresholds")},
            "self_training": {
                **report.as_dict(),
                "n_unlabeled": len(unlabeled),
                "training_seconds": seconds,
                "training_cpu_seconds": cpu_seconds,
            },
        }

    @staticmethod
    def self_training_rows(r: dict[str, Any], pct) -> list[tuple[str, str]]:
        st = r.get("self_training")
        if st is None:
            return []
        rows = [(f"accuracy zero-shot ({r['zero_shot_scorer']})", pct(r["accuracy_zero_shot"]))]
        if "refused" in st:
            return [*rows, ("self-training", f"refused: {st['refused']}")]
        per_class = st["pseudo_labels_per_class"].values()
        return [
            *rows,
            (
                "self-training",
                f"{st['n_unlabeled']} unlabeled ({st['duplicates_removed']} duplicates), {st['n_pseudo_labels']} "
                f"pseudo-labels ({min(per_class)}-{max(per_class)} per class), {len(st['starved'])} starved, "
                f"{st['training_seconds']:.0f} s ({st['training_cpu_seconds']:.0f} s CPU)",
            ),
        ]

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
            *self.self_training_rows(r, pct),
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

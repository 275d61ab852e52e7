"""How the zero-shot side of a multi-label tag comparison reads, on the dev split only: at the tags' shipped
thresholds (most topics ship at 1.0, "never set") against per-tag thresholds fitted for F1 on the comparison's
own training side (``learning.tag_retraining.serving_side``). The dev tickets are split as the retraining job
splits labelled tickets (``held_out``, fraction ``TRIAGE_RETRAIN_HOLDOUT``); the test split is not read.

    .venv/bin/python eval_data/tags/fair_comparison.py --json eval_data/tags/results/fair_comparison.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def main() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    import numpy as np
    from django.conf import settings

    from learning.tag_retraining import fit_f1_thresholds, held_out, predicted_sets, tag_scores
    from mlops.inference.registry import get_scorer
    from tags.evaluation import read_labelled
    from tags.scoring import TagSetSpec, score_tag_set

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tagset", default="topics")
    parser.add_argument("--scorers", default="embedding,ensemble")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()

    spec = TagSetSpec.demo(args.tagset)
    if spec.single_label:
        raise SystemExit("a single-label set is compared on each side's best tag: no threshold to fit")
    labels = [t.slug for t in spec.tags]
    dev = read_labelled(HERE / "dev.jsonl", spec)
    y = dev.y.astype(bool)
    known = np.ones_like(y)
    holdout = np.array([held_out(i, settings.TRIAGE_RETRAIN_HOLDOUT) for i in range(len(dev.texts))])
    train = ~holdout
    results = []
    for name in args.scorers.split(","):
        probs = score_tag_set(dev.texts, spec, get_scorer(name)).probabilities
        shipped = [t.threshold for t in spec.tags]
        fitted = fit_f1_thresholds(probs[train], y[train], known[train], labels)

        def macro(held: np.ndarray, thresholds: list[float]) -> dict:
            return tag_scores(y[holdout], known[holdout], predicted_sets(held, False, thresholds), labels, False)

        at_shipped, at_fitted = macro(probs[holdout], shipped), macro(probs[holdout], [fitted[s] for s in labels])
        row = {
            "tag_set": args.tagset,
            "scorer": name,
            "n_train": int(train.sum()),
            "n_holdout": int(holdout.sum()),
            "shipped_thresholds": dict(zip(labels, shipped, strict=True)),
            "macro_f1_at_shipped": at_shipped["macro_f1"],
            "f1_per_tag_at_shipped": at_shipped["f1_per_tag"],
            "fitted_thresholds": {s: round(v, 4) for s, v in fitted.items()},
            "macro_f1_at_fitted": at_fitted["macro_f1"],
            "f1_per_tag_at_fitted": at_fitted["f1_per_tag"],
            "load_average": list(os.getloadavg()),
        }
        results.append(row)
        print(json.dumps(row), flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

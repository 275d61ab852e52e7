"""Should tag scoring read the ticket as written instead of its ask (``mlops.text.clean_ask``)? DEV only.

For each zero-shot tag set asked (sentiment, urgency) and each offline scorer, the dev split is scored
twice: reading the ask (what every scorer reads today, ``BaseScorer.reads = "ask"``) and reading the
raw text (``reads = "text"``). Two numbers per run, both on dev only (test is never read here):

* ``zero_shot_macro_f1``: the scorer's own argmax over the set's tags, no calibration;
* ``cross_fit_macro_f1``: two folds of dev by scenario (all language versions of a scenario in one
  fold); each fold's calibrations and thresholds fitted on the other (``tags.evaluation.evaluate``,
  as ``evaluate_tags --dev``), macro-F1 averaged over the folds.

    .venv/bin/python eval_data/tags/read_sweep.py --json eval_data/tags/results/read_sweep_dev.json

Needs the packaged models only (no database).
"""

from __future__ import annotations

import argparse
import hashlib
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
    from sklearn.metrics import f1_score

    from mlops.inference.registry import get_scorer
    from tags.evaluation import Labelled, evaluate, read_labelled
    from tags.scoring import TagSetSpec, score_tag_set

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tagsets", default="sentiment,urgency")
    parser.add_argument("--scorers", default="embedding,cross-encoder,ensemble")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()

    dev_path = HERE / "dev.jsonl"
    ids = [json.loads(line)["id"] for line in dev_path.read_text().splitlines() if line.strip()]
    # Fold by scenario number (de-001, es-001 ... are one scenario), by a stable hash.
    fold = np.array([int(hashlib.sha256(i.split("-")[1].encode()).hexdigest()[:8], 16) % 2 for i in ids])
    results = []
    for set_slug in args.tagsets.split(","):
        spec = TagSetSpec.demo(set_slug, shipped=False)
        dev = read_labelled(dev_path, spec)
        halves = [Labelled([dev.texts[i] for i in np.flatnonzero(fold == k)], dev.y[fold == k]) for k in (0, 1)]
        for scorer_name in args.scorers.split(","):
            scorer = get_scorer(scorer_name)
            for reads in ("ask", "text"):
                scorer.reads = reads  # the instance reads this way; the class default stays "ask"
                native = score_tag_set(dev.texts, spec, scorer).native
                guess = np.zeros_like(dev.y)
                guess[np.arange(len(guess)), native.argmax(axis=1)] = 1
                zero_shot = float(f1_score(dev.y, guess, average="macro", zero_division=0))
                folds = [evaluate(spec, halves[1 - k], scorer, dev=halves[k])["macro_f1"] for k in (0, 1)]
                row = {
                    "tag_set": set_slug,
                    "scorer": scorer_name,
                    "reads": reads,
                    "n_dev": len(dev.texts),
                    "zero_shot_macro_f1": round(zero_shot, 4),
                    "cross_fit_macro_f1": round(float(np.mean(folds)), 4),
                    "folds": [round(f, 4) for f in folds],
                    "load_average": list(os.getloadavg()),
                }
                results.append(row)
                print(json.dumps(row), flush=True)
            scorer.reads = "ask"
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""A tag set's head on the worker's frozen embedder against a head on a fine-tuned body, on the dev split only.

Both are trained by the retraining job's own code (``mlops.inference.setfit_tags.train_tag_setfit``):
``steps=0`` fits the head alone on the packaged embedder's embeddings (no body of its own in a worker),
``--steps`` (40, the recipe before) fine-tunes a copy of the body first. Each is scored out of fold on the
dev split (``--folds`` folds, grouped by scenario so that the German, French and Spanish versions of one
ticket fall in the same fold; the same folds for both), by macro-F1 over the set's tags
(``learning.tag_retraining.tag_scores``). The test split is not read.

    .venv/bin/python eval_data/tags/shared_body_dev.py --json eval_data/tags/results/shared_body_dev.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def scenario(ticket_id: str) -> str:
    """The German, French and Spanish files tell the same scenarios, numbered alike (``de-004``, ``fr-004``)."""
    language, number = ticket_id.split("-", 1)
    return f"en-{number}" if language == "en" else f"xx-{number}"


def fold_of(ticket_id: str, folds: int) -> int:
    return int(hashlib.sha256(scenario(ticket_id).encode()).hexdigest()[:8], 16) % folds


def main() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    import tempfile

    import numpy as np
    from django.conf import settings

    from learning.tag_retraining import predicted_sets, tag_scores
    from mlops.inference.encoders import resolve_model_ref
    from mlops.inference.setfit_tags import TagSetFitModel, save_tag_model, train_tag_setfit
    from tags.evaluation import read_labelled
    from tags.scoring import TagSetSpec

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tagsets", default="sentiment,urgency")
    parser.add_argument("--steps", type=int, default=40, help="the fine-tuned side's contrastive steps")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--sides", default="shared_embedder,fine_tuned_body", help="which of the two to train")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()

    dev_path = HERE / "dev.jsonl"
    ids = [json.loads(line)["id"] for line in dev_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    fold = np.array([fold_of(i, args.folds) for i in ids])
    base = resolve_model_ref(settings.TRIAGE_EMBEDDER_MODEL)
    results = []
    for set_slug in args.tagsets.split(","):
        spec = TagSetSpec.demo(set_slug)
        single = spec.single_label
        labels = [t.slug for t in spec.tags]
        dev = read_labelled(dev_path, spec)
        y = np.asarray(dev.y, dtype=bool)
        row: dict = {"tag_set": set_slug, "kind": spec.kind, "n_dev": len(dev.texts), "folds": args.folds}
        sides = {"shared_embedder": 0, "fine_tuned_body": args.steps}
        for name, steps in ((n, sides[n]) for n in args.sides.split(",")):
            probs = np.zeros(y.shape, dtype=np.float64)
            started = time.monotonic()
            per_fold = []
            for k in range(args.folds):
                train, held = fold != k, fold == k
                model = train_tag_setfit(
                    [dev.texts[i] for i in np.flatnonzero(train)],
                    dev.y[train],
                    labels=labels,
                    multi_label=not single,
                    base_model=base,
                    steps=steps,
                )
                with tempfile.TemporaryDirectory() as tmp:
                    path = save_tag_model(model, Path(tmp) / "m", labels=labels, multi_label=not single, meta={})
                    probs[held] = TagSetFitModel(path).probabilities([dev.texts[i] for i in np.flatnonzero(held)])
                fold_scores = tag_scores(
                    y[held], np.ones_like(y[held]), predicted_sets(probs[held], single), labels, single
                )
                per_fold.append(fold_scores["macro_f1"])
                del model
            pooled = tag_scores(y, np.ones_like(y), predicted_sets(probs, single), labels, single)
            row[name] = {
                "steps": steps,
                "macro_f1_out_of_fold": pooled["macro_f1"],
                "f1_per_tag": pooled["f1_per_tag"],
                "macro_f1_per_fold": per_fold,
                "seconds": round(time.monotonic() - started, 1),
            }
        row["load_average"] = list(os.getloadavg())
        results.append(row)
        print(json.dumps(row), flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

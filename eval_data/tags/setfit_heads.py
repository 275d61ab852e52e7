"""What the tag retraining would promote: a tag set's SetFit head trained on the dev split, against the
shipped zero-shot tag scorer (its dev calibrations and thresholds), both scored on test once, by the
retraining job's own code (``mlops.inference.setfit_tags``, ``learning.tag_retraining.tag_scores``).

    .venv/bin/python eval_data/tags/setfit_heads.py --json eval_data/tags/results/setfit_heads.json

Needs the packaged models only (no database). Steps: ``TRIAGE_TAG_SETFIT_STEPS``, as the job (0 since the head
shares the worker's embedder; the results JSON records the steps each row ran with, 40 before).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


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
    from mlops.inference.registry import get_scorer
    from mlops.inference.setfit_tags import TagSetFitModel, save_tag_model, train_tag_setfit
    from tags.evaluation import read_labelled
    from tags.scoring import TagSetSpec, score_tag_set

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tagsets", default="sentiment,urgency,topics")
    parser.add_argument("--scorer", default="ensemble", help="the zero-shot tag scorer it is compared with")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()

    base = resolve_model_ref(settings.TRIAGE_EMBEDDER_MODEL)
    zero_shot = get_scorer(args.scorer)
    results = []
    for set_slug in args.tagsets.split(","):
        spec = TagSetSpec.demo(set_slug)
        single = spec.single_label
        labels = [t.slug for t in spec.tags]
        dev = read_labelled(HERE / "dev.jsonl", spec)
        test = read_labelled(HERE / "test.jsonl", spec)
        known = np.ones_like(test.y, dtype=bool)
        started = time.monotonic()
        model = train_tag_setfit(
            dev.texts,
            dev.y,
            labels=labels,
            multi_label=not single,
            base_model=base,
            steps=settings.TRIAGE_TAG_SETFIT_STEPS,
        )
        seconds = time.monotonic() - started
        with tempfile.TemporaryDirectory() as tmp:
            path = save_tag_model(model, Path(tmp) / "m", labels=labels, multi_label=not single, meta={})
            probs = TagSetFitModel(path).probabilities(test.texts)
        head = tag_scores(test.y.astype(bool), known, predicted_sets(probs, single), labels, single)
        scores = score_tag_set(test.texts, spec, zero_shot)
        served = predicted_sets(scores.probabilities, single, [t.threshold for t in spec.tags])
        serving = tag_scores(test.y.astype(bool), known, served, labels, single)
        row = {
            "tag_set": set_slug,
            "kind": spec.kind,
            "n_train_dev": len(dev.texts),
            "n_test": len(test.texts),
            "steps": settings.TRIAGE_TAG_SETFIT_STEPS,
            "setfit_macro_f1": head["macro_f1"],
            "setfit_f1_per_tag": head["f1_per_tag"],
            "zero_shot_scorer": args.scorer,
            "zero_shot_macro_f1": serving["macro_f1"],
            "zero_shot_f1_per_tag": serving["f1_per_tag"],
            "training_seconds": round(seconds, 1),
            "load_average": list(os.getloadavg()),
        }
        results.append(row)
        print(json.dumps(row), flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Write the calibrations and thresholds fitted on dev into the demo's seed files (run from the repository root).

Reads the JSON reports of ``evaluate_tags --dev eval_data/tags/dev.jsonl --scorer all --json ...`` (one
file per tag set) and stores, per tag, each offline scorer's logistic calibration and the threshold the
serving offline scorer (``ensemble``, what ``auto`` falls back to) reached the target precision at on dev
(1.0 where none does: the tag is then never shown as set) in
``tags/demo_data/tag_sets.json``; the pooled calibration of each set kind goes to
``tags/demo_data/pooled_calibrations.json`` (multi-label from the topics set, single-label from urgency).

    .venv/bin/python eval_data/tags/ship_calibrations.py reports/urgency.json reports/sentiment.json ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SEED = Path("tags/demo_data/tag_sets.json")
POOLED = Path("tags/demo_data/pooled_calibrations.json")
POOLED_FROM = {"single": "urgency", "multi": "topics"}
THRESHOLD_SCORER = "ensemble"


def main(paths: list[str]) -> None:
    seed = json.loads(SEED.read_text())
    pooled = json.loads(POOLED.read_text()) if POOLED.exists() else {}
    by_slug = {s["slug"]: s for s in seed}
    reports = []
    for path in paths:
        loaded = json.loads(Path(path).read_text())
        reports += [(path, r) for r in (loaded if isinstance(loaded, list) else [loaded]) if "fitted" in r]
    for path, report in reports:
        tag_set, scorer = by_slug[report["tag_set"]], report["scorer"]
        for tag in tag_set["tags"]:
            fitted = report["fitted"][tag["slug"]]
            if fitted["calibration"] is not None:
                tag.setdefault("calibration", {})[scorer] = fitted["calibration"]
            if scorer == THRESHOLD_SCORER:
                tag["threshold"] = 1.0 if fitted["threshold"] is None else round(fitted["threshold"], 4)
        if POOLED_FROM[report["kind"]] == report["tag_set"]:
            pooled.setdefault(scorer, {})[report["kind"]] = report["pooled_calibration"]
        print(f"{report['tag_set']}: {scorer} calibrations and thresholds from {path}")
    SEED.write_text(json.dumps(seed, indent=2, ensure_ascii=False) + "\n")
    POOLED.write_text(json.dumps(pooled, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])

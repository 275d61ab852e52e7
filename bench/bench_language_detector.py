"""Memory and accuracy of the language detector (lingua) per configuration, on the tags evaluation set.

    .venv/bin/python bench/bench_language_detector.py [--split dev]

Each configuration runs in a fresh process (lingua keeps its models in process-wide tables, so one
configuration's models would count in the next one's memory): the languages (the demo's language tag
set, with or without ``TRIAGE_TAG_OTHER_LANGUAGES``' "none of ours" languages), high- or low-accuracy
mode, models preloaded when the detector is built or loaded on first use. Measured: RSS after
``import lingua`` (the baseline), after building the detector, after scoring every ticket of the split,
and the language accuracy on the split as ``evaluate_tags --tagset language`` reads it (each ticket's
best configured language). Tune on dev; the test split is read only by ``evaluate_tags``.

Written to ``bench/results/bench_language_detector.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from bench.common import machine, write_result  # noqa: E402  (after the path is set)

TAG_SETS = REPO / "tags" / "demo_data" / "tag_sets.json"
EVAL_DIR = REPO / "eval_data" / "tags"
OTHERS = ["it", "nl", "pl", "pt"]  # TRIAGE_TAG_OTHER_LANGUAGES' default


def demo_languages() -> list[str]:
    sets = json.loads(TAG_SETS.read_text())
    return next([t["slug"] for t in s["tags"]] for s in sets if s["method"] == "language")


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure_one(config: dict) -> dict:
    """In this process: build the detector as ``config`` says, score the split, report memory and accuracy."""
    import lingua
    import numpy as np

    from mlops.inference.language import LanguageDetector

    codes, split = config["codes"], config["split"]
    rows = [json.loads(line) for line in (EVAL_DIR / f"{split}.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if any(t in codes for t in r["tags"])]
    texts = [r["text"] for r in rows]
    truth = np.array([codes.index(next(t for t in r["tags"] if t in codes)) for r in rows])
    del lingua  # imported for the baseline only
    base = rss_mb()
    started = time.perf_counter()
    detector = LanguageDetector(
        codes, others=config["others"], low_accuracy=config["low_accuracy"], preload=config["preload"]
    )
    built = rss_mb()
    build_seconds = time.perf_counter() - started
    started = time.perf_counter()
    probs = detector.probabilities(texts)
    score_seconds = time.perf_counter() - started
    scored = rss_mb()
    guess = probs[:, : len(codes)].argmax(axis=1)
    short = np.array([len(t) < 120 for t in texts])  # lingua's high-accuracy mode reads only these with 1–5-grams
    return {
        **config,
        "tickets": len(texts),
        "accuracy": round(float((guess == truth).mean()), 4),
        "accuracy_short": round(float((guess[short] == truth[short]).mean()), 4),
        "short_tickets": int(short.sum()),
        "errors": [texts[i] for i in np.flatnonzero(guess != truth)],
        "rss_mb_after_import": round(base, 1),
        "detector_mb_built": round(built - base, 1),
        "detector_mb_after_scoring": round(scored - base, 1),
        "build_seconds": round(build_seconds, 2),
        "score_seconds": round(score_seconds, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", default="dev", choices=["dev", "train"], help="never the test split")
    parser.add_argument("--out", default=str(HERE / "results" / "bench_language_detector.json"))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a configuration as JSON: run in this process
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(json.loads(args.one))))
        return 0
    load_before = os.getloadavg()
    codes = demo_languages()
    results = []
    for others, low, preload in itertools.product([OTHERS, []], [False, True], [True, False]):
        config = {"codes": codes, "others": others, "low_accuracy": low, "preload": preload, "split": args.split}
        out = subprocess.run(
            [sys.executable, __file__, "--one", json.dumps(config)],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"},
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(row)
        print(
            f"others={','.join(others) or '-':12} {'low ' if low else 'high'} {'preloaded' if preload else 'lazy     '}"
            f"  accuracy {row['accuracy']:.3f} (short {row['accuracy_short']:.3f})"
            f"  built +{row['detector_mb_built']:.0f} MB, after scoring +{row['detector_mb_after_scoring']:.0f} MB"
        )
    write_result(args.out, {"split": args.split, "configurations": results, "machine": machine(load_before)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

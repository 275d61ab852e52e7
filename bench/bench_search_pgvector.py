"""pgvector HNSW: top-100 recall against exact search, query latency, and index build time.

Passages are synthetic 384-dimensional unit vectors shaped like sentence embeddings: points around
2,000 topic centroids that are themselves grouped in 50 areas (a passage's nearest neighbours are
its topic's passages, then its area's, as with real help-centre text), stored in a separate
database (``triage_bench`` on the embedded server, or ``BENCH_DATABASE_URL``) with the same index
as the app (HNSW, ``vector_cosine_ops``, m and ef_construction read from ``search.models.Passage``;
``--m`` / ``--ef-construction`` try others). Exact top-100 comes from numpy
over the same vectors; queries are fresh points drawn the same way. Latency is measured from a
client over the local socket, ``SET hnsw.ef_search`` per setting, 200 queries after 20 warm-up ones.

    python bench/bench_search_pgvector.py                 # 100k passages (make bench)
    python bench/bench_search_pgvector.py --n 1000000     # the documented 1M run (not in CI)
    python bench/bench_search_pgvector.py --n 20000 --uniform   # worst case: no topic structure
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DIM = 384
K = 100


def synthetic(n: int, rng: np.random.Generator, *, centroids: np.ndarray | None, spread: float) -> np.ndarray:
    """Unit vectors around random topic centroids (or uniform on the sphere when ``centroids`` is None)."""
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 50_000):
        m = min(50_000, n - start)
        noise = rng.standard_normal((m, DIM)).astype(np.float32)
        if centroids is None:
            block = noise
        else:
            # noise of norm ~spread around a unit centroid: cosine to the centroid is about 1/sqrt(1+spread^2)
            block = centroids[rng.integers(0, len(centroids), m)] + noise * (spread / np.sqrt(DIM))
        out[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def database_url(name: str) -> str:
    url = os.environ.get("BENCH_DATABASE_URL")
    if url:
        return url
    from config.embedded import postgres_url

    return postgres_url(name)


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    top = np.empty((len(queries), k), dtype=np.int64)
    for i, q in enumerate(queries):
        sims = vectors @ q
        idx = np.argpartition(-sims, k)[:k]
        top[i] = idx[np.argsort(-sims[idx])]
    return top + 1  # database ids start at 1


def load(conn, vectors: np.ndarray) -> float:
    from pgvector.psycopg import register_vector

    register_vector(conn)
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS bench_passage")
        cur.execute(f"CREATE TABLE bench_passage (id bigint PRIMARY KEY, embedding vector({DIM}) NOT NULL)")
        started = time.monotonic()
        with cur.copy("COPY bench_passage (id, embedding) FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "vector"])
            for i, v in enumerate(vectors, start=1):
                copy.write_row([i, v])
    conn.commit()
    return time.monotonic() - started


def app_index_params() -> tuple[int, int]:
    """m and ef_construction of the app's own passage index (``search.models.Passage``)."""
    from search.models import Passage

    index = next(i for i in Passage._meta.indexes if i.name == "passage_embedding_hnsw")
    return index.m, index.ef_construction


def build_index(conn, maintenance_mem: str, workers: int, m: int, ef_construction: int) -> float:
    with conn.cursor() as cur:
        cur.execute(f"SET maintenance_work_mem = '{maintenance_mem}'")
        cur.execute(f"SET max_parallel_maintenance_workers = {workers}")
        started = time.monotonic()
        cur.execute(
            "CREATE INDEX bench_passage_hnsw ON bench_passage USING hnsw (embedding vector_cosine_ops) "
            f"WITH (m = {int(m)}, ef_construction = {int(ef_construction)})"
        )
        conn.commit()
        elapsed = time.monotonic() - started
        cur.execute("ANALYZE bench_passage")
    conn.commit()
    return elapsed


def measure(conn, queries: np.ndarray, exact: np.ndarray, ef: int, warmup: int = 20) -> dict:
    latencies, recalls = [], []
    with conn.cursor() as cur:
        cur.execute(f"SET hnsw.ef_search = {ef}")
        sql = "SELECT id FROM bench_passage ORDER BY embedding <=> %s LIMIT %s"
        for q in queries[:warmup]:
            cur.execute(sql, (q, K), prepare=True)
            cur.fetchall()
        for q, truth in zip(queries, exact, strict=True):
            started = time.perf_counter()
            cur.execute(sql, (q, K), prepare=True)
            got = [r[0] for r in cur.fetchall()]
            latencies.append((time.perf_counter() - started) * 1000)
            recalls.append(len(set(got) & set(truth.tolist())) / K)
        cur.execute("EXPLAIN " + sql.replace("%s", "%s::vector", 1), (queries[0], K))
        plan = " ".join(r[0] for r in cur.fetchall())
    conn.commit()
    assert "bench_passage_hnsw" in plan, plan
    return {
        "ef_search": ef,
        "recall@100": statistics.fmean(recalls),
        "recall@100_min": min(recalls),
        "p50_ms": float(np.percentile(latencies, 50)),
        "p95_ms": float(np.percentile(latencies, 95)),
        "p99_ms": float(np.percentile(latencies, 99)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=int(os.environ.get("BENCH_SEARCH_PASSAGES", "100000")))
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ef", default="100,200,400", help="hnsw.ef_search values to measure")
    parser.add_argument("--uniform", action="store_true", help="no topic structure (worst case for HNSW)")
    parser.add_argument("--topics", type=int, default=2000)
    parser.add_argument("--spread", type=float, default=1.0, help="noise around a topic centroid")
    parser.add_argument("--m", type=int, help="HNSW m (default: the app's index)")
    parser.add_argument("--ef-construction", type=int, help="HNSW ef_construction (default: the app's index)")
    parser.add_argument("--maintenance-work-mem", default="2GB")
    parser.add_argument("--workers", type=int, default=2, help="max_parallel_maintenance_workers for the build")
    parser.add_argument("--database", default="triage_bench")
    parser.add_argument("--keep", action="store_true", help="keep the table afterwards")
    args = parser.parse_args(argv)

    import django

    django.setup()
    import psycopg

    app_m, app_efc = app_index_params()
    m, ef_construction = args.m or app_m, args.ef_construction or app_efc

    rng = np.random.default_rng(2024)
    centroids = None
    if not args.uniform:
        # Two levels, like a help centre: areas (billing, devices...) and topics within them.
        areas = synthetic(max(1, args.topics // 40), rng, centroids=None, spread=0)
        centroids = synthetic(args.topics, rng, centroids=areas, spread=1.0)
    vectors = synthetic(args.n, rng, centroids=centroids, spread=args.spread)
    queries = synthetic(args.queries, rng, centroids=centroids, spread=args.spread)
    started = time.monotonic()
    exact = exact_top(vectors, queries, K)
    exact_s = time.monotonic() - started

    with psycopg.connect(database_url(args.database), autocommit=False) as conn:
        with conn.cursor() as cur:
            cur.execute("CREATE EXTENSION IF NOT EXISTS vector")
            cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            pgvector_version = cur.fetchone()[0]
        conn.commit()
        load_s = load(conn, vectors)
        build_s = build_index(conn, args.maintenance_work_mem, args.workers, m, ef_construction)
        with conn.cursor() as cur:
            cur.execute("SELECT pg_relation_size('bench_passage_hnsw')")
            index_mb = cur.fetchone()[0] / 2**20
        rows = [measure(conn, queries, exact, int(ef)) for ef in args.ef.split(",")]
        if not args.keep:
            with conn.cursor() as cur:
                cur.execute("DROP TABLE bench_passage")
            conn.commit()

    data = (
        "uniform"
        if args.uniform
        else f"{args.topics} topics in {max(1, args.topics // 40)} areas, spread {args.spread}"
    )
    print(
        f"pgvector {pgvector_version} HNSW (m={m}, ef_construction={ef_construction}, cosine), "
        f"{args.n:,} passages x {DIM} ({data}), {args.queries} queries, top-{K}"
    )
    print(
        f"load {load_s:.1f} s, index build {build_s:.1f} s ({args.workers} parallel workers, "
        f"maintenance_work_mem {args.maintenance_work_mem}), index {index_mb:.0f} MiB; exact numpy {exact_s:.1f} s"
    )
    print(f"{'ef_search':>9} {'recall@100':>10} {'min':>6} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}")
    for r in rows:
        print(
            f"{r['ef_search']:>9} {r['recall@100']:>10.4f} {r['recall@100_min']:>6.2f} {r['p50_ms']:>7.2f} "
            f"{r['p95_ms']:>7.2f} {r['p99_ms']:>7.2f}"
        )
    result = {
        "passages": args.n,
        "dim": DIM,
        "data": data,
        "queries": args.queries,
        "pgvector": pgvector_version,
        "index": {"m": m, "ef_construction": ef_construction, "opclass": "vector_cosine_ops", "size_mib": index_mb},
        "app_index": {"m": app_m, "ef_construction": app_efc},
        "load_s": load_s,
        "build_s": build_s,
        "build_workers": args.workers,
        "cpus": os.cpu_count(),
        "by_ef_search": rows,
    }
    name = "bench_search_pgvector"
    if args.n != 100_000 or args.uniform:
        name += f"_{args.n}{'_uniform' if args.uniform else ''}"
    if (m, ef_construction) != (app_m, app_efc):
        name += f"_m{m}_efc{ef_construction}"
    out = REPO / "bench" / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

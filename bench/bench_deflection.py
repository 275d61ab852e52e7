"""Server time of the deflection endpoints while a ticket is typed: ``python bench/bench_deflection.py``.

The demo help centre is indexed into throw-away tables in the real Postgres (pgvector, as
``evaluate_search`` does; passage vectors from the evaluation cache when present). Then the new-ticket
form's live box (``POST /kb/deflect/``, logged in as an agent) and the portals' API
(``POST /api/deflect/``, an integration token) are called through the whole Django stack (middleware,
authentication, throttling, view, template or serializer) with what a person has typed so far: prefixes
of the demo test tickets of 3, 8 and 20 words and the whole ticket, plus the hand-written questions no
demo article answers. The bi-encoder is loaded and a few calls made before timing (warm models, as a
web worker warmed at start); the reranker is never used on this path. The time of each call, from
request to response in this process, is the server time (no network, no client).

Target (issue #17): p95 ≤ 150 ms on a CPU without bfloat16. Writes ``bench/results/bench_deflection.json``
with p50/p95 overall, per prefix length and per endpoint, of ``deflect()`` alone and its parts, the
process CPU time per call, the share of calls that found an article, the
CPU model and flags and the load average. ``BENCH_DEFLECT_TICKETS`` (default 60) sets how many tickets.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("OMP_NUM_THREADS", "1")  # as config/gunicorn.conf.py runs the web workers
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import machine, percentile, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TICKETS = int(os.environ.get("BENCH_DEFLECT_TICKETS", "60"))
PREFIX_WORDS = (3, 8, 20)  # what has been typed when the box asks; "all" is the whole ticket
TARGET_P95_MS = 150.0
WARM_CALLS = 5


def typed_texts(tickets: list[str], no_answer: list[str]) -> list[tuple[str, str]]:
    """(length bucket, text) as the box would send them while each ticket is typed."""
    texts = []
    for ticket in tickets:
        words = ticket.split()
        for n in PREFIX_WORDS:
            if len(words) > n:
                texts.append((f"{n} words", " ".join(words[:n])))
        texts.append(("whole ticket", ticket))
    texts += [("no article", text) for text in no_answer]
    return texts


def stats(values: list[float]) -> dict:
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50), 1),
        "p95_ms": round(percentile(values, 95), 1),
        "max_ms": round(max(values), 1),
    }


def main() -> dict:
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import Group, User
    from django.test import Client
    from rest_framework.test import APIClient

    from api.models import ApiToken
    from mlops.inference.encoders import get_embedder
    from search.deflection import deflect
    from search.eval_cache import CachedEmbedder
    from search.evaluation import default_cache_path, index_kb, isolated_knowledge_base, load_kb, load_queries
    from triage.roles import AGENTS, INTEGRATIONS

    load_before = os.getloadavg()
    rows = load_kb(ROOT / "triage" / "demo_data" / "articles.jsonl")
    tickets = list(load_queries(ROOT / "search" / "eval_data" / "demo_test_queries.tsv").values())[:TICKETS]
    no_answer = list(load_queries(ROOT / "search" / "eval_data" / "demo_no_answer.tsv").values())
    texts = typed_texts(tickets, no_answer)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    embedder = get_embedder()  # what a web worker loads at start (config/gunicorn.conf.py)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # Counts live in Redis shared with other runs: this measures the endpoints, not the rate limit.
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {k: "1000000/min" for k in settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]},
    }

    timings: dict[str, list[float]] = {}
    found = {"box": 0, "api": 0, "service": 0}
    with isolated_knowledge_base():  # everything below, users and tokens included, is rolled back
        index_kb(rows, embedder=CachedEmbedder(embedder, default_cache_path()))
        agent = User.objects.create_user(f"bench-agent-{time.monotonic_ns()}", password="x")
        agent.groups.add(Group.objects.get_or_create(name=AGENTS)[0])
        portal = User.objects.create_user(f"bench-portal-{time.monotonic_ns()}", password="x")
        portal.groups.add(Group.objects.get_or_create(name=INTEGRATIONS)[0])
        _, secret = ApiToken.issue(portal, name="bench", scope=ApiToken.Scope.INTEGRATION)
        box = Client()
        box.force_login(agent)
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")

        def call_box(text: str) -> bool:
            response = box.post("/kb/deflect/", {"subject": "", "body": text}, HTTP_HX_REQUEST="true")
            assert response.status_code == 200, response.content[:500]
            return b'data-testid="deflection-articles"' in response.content

        def call_api(text: str) -> bool:
            response = api.post("/api/deflect/", {"text": text[: settings.SEARCH_DEFLECT_MAX_CHARS]}, format="json")
            assert response.status_code == 200, response.content[:500]
            return bool(response.json()["articles"])

        def call_service(text: str) -> bool:
            result = deflect(text[: settings.SEARCH_DEFLECT_MAX_CHARS])
            for part, ms in result.timings_ms.items():
                parts.setdefault(part, []).append(ms)
            return bool(result.articles)

        for _, text in texts[:WARM_CALLS]:
            call_box(text)
            call_api(text)
        parts: dict[str, list[float]] = {}
        cpu: dict[str, list[float]] = {}
        for bucket, text in texts:
            for name, call in (("box", call_box), ("api", call_api), ("service", call_service)):
                started, cpu_started = time.perf_counter(), time.process_time()
                found[name] += call(text)
                ms = (time.perf_counter() - started) * 1000
                cpu.setdefault(name, []).append((time.process_time() - cpu_started) * 1000)
                if name == "service":  # deflect() alone: what the endpoints add is the difference
                    timings.setdefault("service: deflect()", []).append(ms)
                    continue
                for key in ("all", f"endpoint: {name}", f"typed: {bucket}"):
                    timings.setdefault(key, []).append(ms)

    summary = {key: stats(values) for key, values in timings.items()}
    result = {
        "benchmark": "deflection",
        "what": "server time of POST /kb/deflect/ (live box) and POST /api/deflect/ (portals), demo help centre",
        "texts": len(texts),
        "tickets": len(tickets),
        "no_answer_questions": len(no_answer),
        "reranker": "never on this path",
        "target_p95_ms": TARGET_P95_MS,
        "meets_target": summary["all"]["p95_ms"] <= TARGET_P95_MS,
        "timings": summary,
        # CPU time of this process per call (every thread: the embedder's too); on a shared machine the
        # wall time also holds the waits for a core, this does not.
        "cpu_ms": {name: stats(values) for name, values in cpu.items()},
        "service_parts": {part: stats(values) for part, values in parts.items()},
        "share_with_an_article": {k: round(v / len(texts), 3) for k, v in found.items()},
        "embedder": embedder.version,
        "process_max_rss_mib": {"before_embedder": round(rss_before), "after_embedder": round(rss_after)},
        "machine": machine(load_before),
    }
    for key, row in [*summary.items(), *((f"cpu: {k}", v) for k, v in result["cpu_ms"].items())]:
        print(f"{key:24s} n={row['n']:4d}  p50 {row['p50_ms']:7.1f} ms  p95 {row['p95_ms']:7.1f} ms")
    write_result(ROOT / "bench" / "results" / "bench_deflection.json", result)
    return result


if __name__ == "__main__":
    main()

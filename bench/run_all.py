"""Run every benchmark in bench/ (files named bench_*.py with a main()), in one process each.

Results land in bench/results/<name>.json; each benchmark prints its own table. Speed targets are
ratios against a named baseline measured in the same run, never absolute timings (the API benchmark's
p95 is the exception: it is a latency target on this machine). A new ``bench_<name>.py`` with a
``main()`` is picked up here and by ``make bench``; ``python bench/run_all.py api routing`` runs some.
Benchmarks today: api, burst, deflection, routing, search_pgvector, search_rerank, search_suggest,
setfit, worker_memory. See bench/README.md for what each measures and the latest numbers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    only = set(sys.argv[1:])
    scripts = sorted(p for p in HERE.glob("bench_*.py") if not only or p.stem.removeprefix("bench_") in only)
    failed = []
    for script in scripts:
        print(f"\n=== {script.stem} ===", flush=True)
        started = time.monotonic()
        env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
        code = subprocess.call([sys.executable, str(script)], cwd=HERE.parent, env=env)
        print(f"--- {script.stem}: exit {code} in {time.monotonic() - started:.0f} s", flush=True)
        if code:
            failed.append(script.stem)
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

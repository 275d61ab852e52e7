"""The fault test of ``tests/platform/test_fault_run.py`` at scale, outside CI (it takes most of an hour
on a shared 2-core machine): N tickets through the API while the worker is killed (-9), Redis is killed
(-9) and restarted, and Postgres restarts. Figures go to ``bench/results/fault_run.json``.

    TRIAGE_ENV=test TRIAGE_REDIS_PORT=6392 .venv/bin/python bench/fault_run.py [N] [--final-within SECONDS]

Not named ``bench_*.py``: ``make bench`` does not run it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tickets", nargs="?", type=int, default=1000)
    parser.add_argument("--final-within", type=int, default=3600, help="seconds allowed to reach the final state")
    parser.add_argument("--report", type=Path, default=ROOT / "bench" / "results" / "fault_run.json")
    args = parser.parse_args()
    env = {
        **os.environ,
        "TRIAGE_ENV": "test",
        "TRIAGE_FAULT_TICKETS": str(args.tickets),
        "TRIAGE_FAULT_FINAL_WITHIN": str(args.final_within),
        "TRIAGE_FAULT_REPORT": str(args.report),
    }
    command = [sys.executable, "-m", "pytest", "tests/platform/test_fault_run.py", "-q", "-s", "-p", "no:cacheprovider"]
    return subprocess.call(command, cwd=ROOT, env=env)


if __name__ == "__main__":
    raise SystemExit(main())

"""The Celery processes of one worker host, started and stopped by pid file.

    python -m config.workers start     # what `make worker` runs
    python -m config.workers stop      # what `make stop-worker` runs
    python -m config.workers status

One copy of each model per host (issue #18). Three commands, the same ones docker-compose.yml runs as
three services (``tests/platform/test_worker_layout.py`` checks that they agree):

* ``inference`` — queues ``inference`` and ``default``, a prefork pool of **one** process that loads
  the models (``worker_process_init``) and runs every model task, batched. The main process never
  imports torch: it only talks to Redis and supervises the child. Prefork rather than a threads or
  solo pool because it is the pool that keeps Celery's guarantees: a task past
  ``TRIAGE_INFERENCE_TIME_LIMIT`` is killed (threads and solo pools cannot enforce a hard time limit,
  and the visibility timeout is derived from it), a child killed mid-task has its message re-queued
  (``task_reject_on_worker_lost``), and the main process answers pings (``/healthz``) while a batch
  runs. One child rather than several: each child held its own copy of every model (two children:
  3.0 GB, 4.2 GB with a SetFit model serving), and the models already use every core through torch's
  and onnxruntime's threads; throughput comes from scoring many tickets per forward pass instead. The
  models are loaded in the child, not before the fork, so that CUDA is never initialised in a parent
  that forks, and a replacement child loads its own.
* ``training`` — queue ``training``, one child that handles one task and is then replaced
  (``--max-tasks-per-child 1``): a training run's memory is given back when it ends, and is never
  duplicated in the inference process. Its child does not load the serving models (warming is for
  processes that consume ``inference``).
* ``beat`` — the scheduler (sweepers, retraining check), one per deployment, in its own process so
  that restarting or scaling workers never runs two schedulers.

This module does not import Django: ``make stop`` uses it before anything is set up.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
# Seconds a worker gets after SIGTERM to finish the task it runs (warm shutdown) before SIGKILL.
STOP_GRACE_SECONDS = 30

# glibc gives each thread that allocates a heap arena of its own (up to 8 per core), and torch's and
# onnxruntime's threads all allocate: with two arenas the inference process held ~50 MB less
# (bench/bench_worker_memory.py, 1,078 -> 1,030 MB). docker-compose.yml sets the same.
PROCESS_ENV = {"MALLOC_ARENA_MAX": "2"}

INFERENCE_QUEUES = "inference,default"
TRAINING_QUEUES = "training"


def celery_args(name: str, *, data_dir: Path) -> list[str]:
    """The arguments after ``celery -A config`` for process ``name`` (``inference``, ``training``, ``beat``)."""
    if name == "inference":
        return ["worker", "-Q", INFERENCE_QUEUES, "-P", "prefork", "-c", "1", "-n", "inference@%h"]
    if name == "training":
        return [
            "worker", "-Q", TRAINING_QUEUES, "-P", "prefork", "-c", "1", "--prefetch-multiplier", "1",
            "--max-tasks-per-child", "1", "-n", "training@%h",
        ]  # fmt: skip
    if name == "beat":
        return ["beat", "--schedule", str(data_dir / "celerybeat-schedule")]
    raise ValueError(f"unknown worker process {name!r}; one of {', '.join(PROCESSES)}")


PROCESSES = ("inference", "training", "beat")
LEGACY = "legacy"


def command(name: str, *, data_dir: Path, python: str = sys.executable) -> list[str]:
    """The full command line of process ``name``, with its pid file under ``data_dir``."""
    return [
        python, "-m", "celery", "-A", "config", *celery_args(name, data_dir=data_dir),
        "--loglevel", "INFO", "--pidfile", str(pid_path(name, data_dir)),
    ]  # fmt: skip


def pid_path(name: str, data_dir: Path) -> Path:
    # "legacy": the single worker (with beat) that `make worker` started before this layout.
    return data_dir / ("worker.pid" if name == LEGACY else f"worker-{name}.pid")


def running_pid(name: str, data_dir: Path) -> int | None:
    """The pid in ``name``'s pid file if that process is alive and is ours (its command line names the
    pid file: after a crash and a reboot the number may belong to something else)."""
    path = pid_path(name, data_dir)
    try:
        pid = int(path.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    # The legacy worker was given the pid file relative to the project directory.
    named = {str(path).encode()}
    if path.is_relative_to(BASE_DIR):
        named.add(str(path.relative_to(BASE_DIR)).encode())
    return pid if named & set(cmdline) else None


def start(
    data_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
    names: tuple[str, ...] = PROCESSES,
) -> dict[str, int]:
    """Start the host's processes in the background (each its own session); returns their pids.

    >>> start(Path(".data"))  # doctest: +SKIP
    {'inference': 4242, 'training': 4243, 'beat': 4244}
    """
    log_dir = log_dir or data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    pids = {}
    for name in names:
        if running_pid(name, data_dir):
            raise RuntimeError(f"the {name} process is already running (pid file {pid_path(name, data_dir)})")
        pid_path(name, data_dir).unlink(missing_ok=True)  # stale: Celery refuses to start over one
        with open(log_dir / f"worker-{name}.log", "ab") as log:
            process = subprocess.Popen(
                command(name, data_dir=data_dir),
                cwd=BASE_DIR,
                env={**PROCESS_ENV, **os.environ, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        pids[name] = process.pid
    return pids


def stop(data_dir: Path, *, grace: float = STOP_GRACE_SECONDS) -> list[str]:
    """TERM each running process (a worker finishes its task: warm shutdown), KILL it after ``grace`` s."""
    stopped = []
    for name in (*PROCESSES, LEGACY):
        pid = running_pid(name, data_dir)
        if pid is None:
            pid_path(name, data_dir).unlink(missing_ok=True)
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        pid_path(name, data_dir).unlink(missing_ok=True)
        stopped.append(f"{name} ({pid})")
    return stopped


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child of ours that exited stays a zombie until reaped; it is gone for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Start or stop this host's Celery processes by pid file.")
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.add_argument("--data-dir", type=Path, help="pid files, logs and beat's schedule (default: TRIAGE_DATA_DIR)")
    args = parser.parse_args(argv)
    # The same directory as config/embedded.py's, read the same way (no Django here).
    data_dir = (args.data_dir or Path(os.environ.get("TRIAGE_DATA_DIR") or BASE_DIR / ".data")).resolve()
    if args.action == "start":
        pids = start(data_dir)
        for name, pid in pids.items():
            print(f"{name}: pid {pid}, log {data_dir / 'logs' / f'worker-{name}.log'}")
    elif args.action == "stop":
        for line in stop(data_dir):
            print(f"stopped {line}")
    else:
        for name in PROCESSES:
            pid = running_pid(name, data_dir)
            print(f"{name}: {'pid ' + str(pid) if pid else 'not running'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The worker host (config/workers.py): what `make worker` and docker-compose start, one copy of each
model per host, processes known by their pid files."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
import yaml

from config import workers
from tests.workers import test_database_url as database_url_of_tests
from tests.workers import wait_for

REPO = Path(__file__).resolve().parents[2]


def compose_command(service: str) -> list[str]:
    spec = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"][service]
    return spec["command"]


SERVICES = {"worker-inference": "inference", "worker-training": "training", "beat": "beat"}


@pytest.mark.parametrize(("service", "name"), SERVICES.items())
def test_compose_runs_the_same_processes_as_make_worker(service, name):
    # compose's beat keeps its schedule in /tmp; make worker's in .data
    assert compose_command(service) == [
        "celery", "-A", "config", *workers.celery_args(name, data_dir=Path("/tmp")), "--loglevel", "INFO"
    ]  # fmt: skip


def test_beat_runs_once_in_its_own_service():
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    schedulers = [name for name, spec in services.items() if {"beat", "-B"} & set(spec.get("command") or [])]
    assert schedulers == ["beat"]


def test_the_cuda_image_starts_the_inference_worker_as_compose_does():
    cmd = re.search(r'^CMD (\[.*"celery".*\])$', (REPO / "Dockerfile").read_text(), re.M).group(1)
    assert yaml.safe_load(cmd) == compose_command("worker-inference")


def test_a_pid_file_naming_another_process_is_not_ours(tmp_path):
    workers.pid_path("inference", tmp_path).write_text(str(os.getpid()))  # alive, but not a worker of ours
    assert workers.running_pid("inference", tmp_path) is None
    assert workers.stop(tmp_path) == []
    assert os.getpid() and not workers.pid_path("inference", tmp_path).exists()


def test_stop_also_stops_the_single_worker_that_make_worker_started_before(tmp_path):
    import subprocess
    import sys

    data_dir = workers.BASE_DIR / ".data" / f"test-legacy-{os.getpid()}"
    data_dir.mkdir(parents=True, exist_ok=True)
    legacy = workers.pid_path(workers.LEGACY, data_dir)
    # As the old Makefile started it: the pid file named relative to the project directory.
    stand_in = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "--pidfile", str(legacy.relative_to(workers.BASE_DIR))]
    )
    try:
        legacy.write_text(str(stand_in.pid))
        wait_for(lambda: workers.running_pid(workers.LEGACY, data_dir), timeout=10, message="the stand-in's exec")
        assert workers.stop(data_dir, grace=10) == [f"legacy ({stand_in.pid})"]
        assert stand_in.wait(10) == -15  # TERM: a worker's warm shutdown
        assert not legacy.exists()
    finally:
        stand_in.kill()
        data_dir.rmdir()


def test_an_unknown_process_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown worker process 'gpu'"):
        workers.command("gpu", data_dir=tmp_path)


def mapped_libraries(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_only_the_inference_pool_process_loads_the_models_and_stop_ends_every_process(tmp_path, settings):
    import psutil

    from tests.workers import purge_queues

    purge_queues()
    env = {
        "DATABASE_URL": database_url_of_tests(),
        "REDIS_URL": settings.REDIS_URL,
        "TRIAGE_ENV": "test",
        "TRIAGE_ROUTING_SCORER": "embedding",
    }
    pids = workers.start(tmp_path, env=env, names=("inference", "training"))
    try:
        assert set(pids) == {"inference", "training"}
        children = {}
        for name, pid in pids.items():
            children[name] = wait_for(
                lambda pid=pid: psutil.Process(pid).children(), timeout=180, message=f"the {name} pool process"
            )
        for name in pids:
            wait_for(lambda name=name: workers.running_pid(name, tmp_path), timeout=60, message=f"{name}'s pid file")
        assert [workers.running_pid(name, tmp_path) for name in pids] == list(pids.values())
        assert [len(c) for c in children.values()] == [1, 1]  # one pool process each
        inference_child, training_child = children["inference"][0].pid, children["training"][0].pid
        log = tmp_path / "logs" / "worker-inference.log"
        wait_for(lambda: "inference@" in log.read_text() and " ready." in log.read_text(), timeout=300, message="ready")
        # The embedder is warmed before the child takes tasks: torch is mapped into it, and only into it.
        wait_for(lambda: "libtorch" in mapped_libraries(inference_child), timeout=300, message="warmed models")
        assert "libtorch" not in mapped_libraries(pids["inference"])
        assert "libtorch" not in mapped_libraries(pids["training"])
        assert "libtorch" not in mapped_libraries(training_child)
        assert shlex.join(workers.command("training", data_dir=tmp_path)).endswith(
            f"--pidfile {workers.pid_path('training', tmp_path)}"
        )
    finally:
        stopped = workers.stop(tmp_path)
    assert sorted(line.split()[0] for line in stopped) == ["inference", "training"]
    for pid in [*pids.values(), inference_child, training_child]:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not list(tmp_path.glob("worker-*.pid"))

"""Outside ``make`` (no HF_HUB_OFFLINE in the environment) a process decides once whether the hub is
reachable, and a model that is not on this machine fails at once instead of after ~40 s of retries."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

from config import hub

ROOT = Path(__file__).resolve().parents[2]

# Loads the NLI model the way routing does (registry) and the way a script would (NLIScorer directly,
# which goes straight to transformers), timing each after the heavy imports are done.
LOAD_NLI = """
import json, os, time
import django
django.setup()
import torch  # imported before timing (transformers imports lazily): only the waiting on the hub counts
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from django.conf import settings
from mlops.inference.encoders import ModelUnavailable
from mlops.inference.nli import NLIScorer
from mlops.inference.registry import get_scorer
result = {"HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE"), "reason": settings.TRIAGE_HUB_REASON}
loaders = {"registry": lambda: get_scorer("nli"), "transformers": lambda: NLIScorer(settings.TRIAGE_NLI_MODEL)}
for name, load in loaders.items():
    started = time.monotonic()
    try:
        load()
        result[name] = "loaded"
    except ModelUnavailable as exc:
        result[name] = str(exc)
    result[name + "_seconds"] = time.monotonic() - started
print("RESULT " + json.dumps(result))
"""


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_process_without_the_makefile_environment_does_not_wait_for_the_hub(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    # A hub that refuses connections, wherever the suite runs (huggingface_hub retried these for ~40 s).
    env.update(
        HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}",
        HF_HOME=str(tmp_path / "hf-home"),  # an empty cache: the model is nowhere on this machine
        TRIAGE_NLI_MODEL="cross-encoder/nli-deberta-v3-small",
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", LOAD_NLI], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stderr[-3000:]
    result = json.loads(lines[0][len("RESULT ") :])
    assert result["HF_HUB_OFFLINE"] == "1" and "did not answer" in result["reason"]
    assert "the hub is off" in result["registry"], result
    assert result["transformers"] != "loaded"
    assert result["registry_seconds"] < 2.0, result
    assert result["transformers_seconds"] < 5.0, result
    assert "Retrying in" not in done.stderr, done.stderr[-3000:]
    assert wall < 120  # start-up included; the retries alone took 40-90 s


def test_packaged_models_and_local_paths_need_no_hub(tmp_path):
    assert not hub.names_hub_model("packaged:all-MiniLM-L6-v2")
    assert not hub.names_hub_model(str(tmp_path))
    assert not hub.names_hub_model("./models/nli")
    assert hub.names_hub_model("cross-encoder/nli-deberta-v3-small")
    access = hub.check_access(
        ["packaged:all-MiniLM-L6-v2", str(tmp_path)], explicit=None, endpoint="http://127.0.0.1:9", timeout=1.0
    )
    assert access.offline and access.reason == "no model setting names a hub model"


def test_an_explicit_environment_value_wins_without_a_check():
    access = hub.check_access(["org/model"], explicit="0", endpoint="http://127.0.0.1:9", timeout=1.0)
    assert not access.offline and "HF_HUB_OFFLINE=0" in access.reason


def test_a_hub_that_answers_keeps_downloads_on():
    server = HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)  # answers every request with 501
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_port}"
        access = hub.check_access(["org/model"], explicit=None, endpoint=endpoint, timeout=2.0)
    finally:
        server.shutdown()
        server.server_close()
    assert not access.offline, access.reason


def test_a_hub_that_accepts_but_never_answers_costs_at_most_the_check_timeout():
    # Like an intercepting proxy or a stalled server: the connection opens, no response comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        started = time.monotonic()
        access = hub.check_access(
            ["org/model"], explicit=None, endpoint=f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.5
        )
        elapsed = time.monotonic() - started
    assert access.offline and "did not answer within 0.5 s" in access.reason
    assert elapsed < 1.5

"""The Parcelwise evaluation set (``eval_data/parcelwise``) is consistent and readable by the project's loaders."""

from __future__ import annotations

import filecmp
import importlib.util
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[2] / "eval_data" / "parcelwise"


def _build_module():
    spec = importlib.util.spec_from_file_location("parcelwise_build", HERE / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_files_are_what_the_hand_written_sources_build(tmp_path: Path) -> None:
    _build_module().build(out=tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "tickets.jsonl" in names and "test.tsv" in names
    match, mismatch, errors = filecmp.cmpfiles(HERE, tmp_path, names, shallow=False)
    assert (mismatch, errors) == ([], []), "run python eval_data/parcelwise/build.py and commit its output"


def test_the_check_script_finds_no_problem() -> None:
    # A subprocess, because the script sets Django up itself the way a person runs it.
    result = subprocess.run(
        [sys.executable, str(HERE / "check.py")], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test   n=240" in result.stdout

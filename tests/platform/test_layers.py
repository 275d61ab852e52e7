"""The layer rule of docs/architecture.md, as import-linter contracts (pyproject.toml), holds and bites."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("config", "mlops", "triage", "search", "tags", "learning", "api")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_code_keeps_every_layer_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_core_module_that_imports_an_app_above_it_breaks_the_build(tmp_path):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / "mlops" / "calibration.py").open("a") as module:
        module.write("\nfrom learning import reports  # noqa: E402,F401  (the breach under test)\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "mlops is the model core: it imports no app above it BROKEN" in result.stdout
    assert "mlops.calibration -> learning.reports" in result.stdout

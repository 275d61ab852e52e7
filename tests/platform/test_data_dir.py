"""Trained models are written under the data directory, never into the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRINT_DIRS = "from django.conf import settings; print(settings.TRIAGE_DATA_DIR); print(settings.TRIAGE_ARTIFACTS_DIR)"


def settings_dirs(**env: str) -> tuple[Path, Path]:
    """The two directories as a fresh process reads them from ``env`` (nothing else of ours set)."""
    clean = {k: v for k, v in os.environ.items() if k not in ("TRIAGE_DATA_DIR", "TRIAGE_ARTIFACTS_DIR")}
    # Addresses that are never contacted: settings only parse them, so no embedded server starts.
    clean.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL="postgres://nobody@127.0.0.1:1/none",
        REDIS_URL="redis://127.0.0.1:1/0",
        HF_HUB_OFFLINE="1",
        **env,
    )
    script = f"import django; django.setup(); {PRINT_DIRS}"
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=clean, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    data, artifacts = done.stdout.split()
    return Path(data), Path(artifacts)


def test_by_default_trained_models_go_under_the_data_directory_not_the_source_tree():
    data, artifacts = settings_dirs()
    assert data == ROOT / ".data"
    assert artifacts == ROOT / ".data" / "artifacts"


def test_they_follow_the_data_directory_and_production_can_name_its_own(tmp_path):
    assert settings_dirs(TRIAGE_DATA_DIR=str(tmp_path)) == (tmp_path, tmp_path / "artifacts")
    _, artifacts = settings_dirs(TRIAGE_DATA_DIR=str(tmp_path), TRIAGE_ARTIFACTS_DIR=str(tmp_path / "models"))
    assert artifacts == tmp_path / "models"

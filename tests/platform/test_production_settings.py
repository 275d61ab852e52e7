"""DEBUG is off unless asked for, and the documented production variables give settings that
``manage.py check --deploy`` passes without a single warning."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

from django.conf import settings

# What .env.example and the README list as the variables a production deployment sets.
PRODUCTION = {
    "TRIAGE_ENV": "production",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "DJANGO_ALLOWED_HOSTS": "triage.example.com",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://triage.example.com",
    # Never connected to by these checks; set so that no embedded server starts.
    "DATABASE_URL": "postgres://triage:secret@db.invalid:5432/triage",
    "REDIS_URL": "redis://redis.invalid:6379/0",
    "TRIAGE_ROUTING_SCORER": "ensemble",
}


def run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    # Only the variables named here: none of the test run's own (TRIAGE_ENV=test, DJANGO_DEBUG, ...).
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    return subprocess.run(
        [sys.executable, *args],
        cwd=settings.BASE_DIR,
        env={**keep, "TRIAGE_REDIS_PORT": os.environ.get("TRIAGE_REDIS_PORT", "6392"), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def debug_setting(**env: str) -> str:
    code = "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'config.settings'; django.setup(); "
    code += "from django.conf import settings; print(settings.DEBUG)"
    result = run(["-c", code], **env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_debug_is_off_by_default_in_development_and_on_only_when_asked():
    assert debug_setting(TRIAGE_ENV="development") == "False"
    assert debug_setting(TRIAGE_ENV="development", DJANGO_DEBUG="1") == "True"
    assert debug_setting(**PRODUCTION) == "False"


def test_check_deploy_passes_with_no_warnings_on_the_documented_production_variables():
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_an_empty_variable_copied_from_env_example_keeps_the_secure_default():
    blank = {name: "" for name in ("DJANGO_SECURE_SSL_REDIRECT", "DJANGO_SECURE_HSTS_SECONDS", "DJANGO_DEBUG")}
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **PRODUCTION, **blank)
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_deploy_still_catches_a_missing_production_setting():
    result = run(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **PRODUCTION, DJANGO_SECURE_HSTS_SECONDS="0"
    )
    assert result.returncode != 0
    assert "security.W004" in result.stdout + result.stderr

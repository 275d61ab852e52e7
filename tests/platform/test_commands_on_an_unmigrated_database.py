"""Every management command on a database that was never migrated: the ones that need its tables stop
with "run `python manage.py migrate` first" (a CommandError, no traceback); the ones that work from
files alone run."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from django.core.management import CommandError, call_command, get_commands, load_command_class
from django.db import connection

from config.commands import MIGRATE_FIRST, DatabaseCommand

ROOT = Path(__file__).resolve().parents[2]
PROJECT_APPS = {"triage", "search", "mlops", "learning", "api"}
# Commands that read only the files they are given (and the packaged models).
FILE_ONLY = {"evaluate_routing", "learning_curve"}
# Arguments that parse; none of them is read, since the check comes before the command's work.
ARGS = {
    "create_api_token": ["ada", "--scope", "agent", "--name", "gateway"],
    "import_labels": ["labels.csv"],
    "import_tickets": ["tickets.csv"],
    "import_articles": ["articles.jsonl"],
    "evaluate_search": ["--kb", "kb.jsonl", "--queries", "q.tsv", "--qrels", "qrels.tsv"],
    "fit_search_relevance": ["--features", "features.json"],
}
LABELED = "text\tlabel\nMy card was declined at the shop\tbilling\nI forgot my password\tlogin\n"


def project_commands() -> dict[str, str]:
    return {name: app for name, app in get_commands().items() if app in PROJECT_APPS}


@pytest.fixture
def unmigrated(db):
    """Inside the test's transaction, the connection sees an empty schema: no table, no migration record."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE SCHEMA never_migrated")
        cursor.execute("SET LOCAL search_path TO never_migrated")


def test_every_project_command_either_needs_the_migrated_database_or_only_files():
    commands = project_commands()
    assert FILE_ONLY <= set(commands) and len(commands) >= 13
    for name, app in commands.items():
        command = load_command_class(app, name)
        assert isinstance(command, DatabaseCommand) != (name in FILE_ONLY), name


def test_commands_that_need_the_database_say_run_migrate_first(unmigrated):
    needing = sorted(set(project_commands()) - FILE_ONLY)
    for name in needing:
        with pytest.raises(CommandError, match=f"not migrated .*{MIGRATE_FIRST}"):
            call_command(name, *ARGS.get(name, []))


def test_a_file_only_command_runs_without_any_table(unmigrated, tmp_path, capsys):
    labeled = tmp_path / "test.tsv"
    labeled.write_text(LABELED, encoding="utf-8")
    call_command("evaluate_routing", test=str(labeled), scorer="embedding")
    assert "macro" in capsys.readouterr().out.lower()


@pytest.fixture
def fresh_database():
    """A database of its own on the same server, created by settings on first use and dropped after."""
    name = f"never_migrated_{uuid.uuid4().hex[:8]}"
    yield name
    params = {k: v for k, v in connection.get_connection_params().items() if k in ("host", "port", "user")}
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_on_a_fresh_checkout_manage_py_says_what_to_do_without_a_traceback(fresh_database, tmp_path):
    env = {**os.environ, "TRIAGE_DB_NAME": fresh_database}
    env.pop("DATABASE_URL", None)
    kb, queries, qrels = tmp_path / "kb.jsonl", tmp_path / "q.tsv", tmp_path / "qrels.tsv"
    kb.write_text('{"id": "a1", "title": "Refunds", "body": "How refunds work."}\n')
    queries.write_text("q1\trefund please\n")
    qrels.write_text("q1\ta1\t1\n")
    for argv in (
        ["quality_report"],
        ["evaluate_search", "--kb", str(kb), "--queries", str(queries), "--qrels", str(qrels)],
    ):
        done = subprocess.run(
            [sys.executable, "manage.py", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 1, (argv, done.stdout[-2000:], done.stderr[-2000:])
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
        assert "CommandError: the database is not migrated" in done.stderr and MIGRATE_FIRST in done.stderr

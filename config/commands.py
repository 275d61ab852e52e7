"""The base of every management command that reads or writes the app's tables.

On a fresh checkout (or after a pull that brought new migrations) such a command used to crash with
``relation "search_fusionweights" does not exist`` and a traceback. ``DatabaseCommand`` checks the
migrations first and stops with the fix instead. Commands that work from files alone
(``evaluate_routing``, ``learning_curve``) stay plain ``BaseCommand``s and need no database.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

MIGRATE_FIRST = "run `python manage.py migrate` first"


def unapplied_migrations() -> list[str]:
    """``app.migration`` names not yet applied to the default database (all of them on an empty one)."""
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [f"{migration.app_label}.{migration.name}" for migration, _backwards in plan]


class DatabaseCommand(BaseCommand):
    """A command that needs the migrated database: refuses with ``CommandError`` when it is not."""

    # Django runs check_migrations() before handle() for these (from manage.py and call_command alike).
    requires_migrations_checks = True

    def check_migrations(self) -> None:
        try:
            missing = unapplied_migrations()
        except ImproperlyConfigured:  # no database configured: handle() says what it needs
            return
        except DatabaseError as exc:
            raise CommandError(f"the database cannot be reached ({str(exc).strip()})") from None
        if missing:
            apps = sorted({name.split(".", 1)[0] for name in missing})
            raise CommandError(
                f"the database is not migrated ({len(missing)} migration(s) not applied, for {', '.join(apps)}): "
                f"{MIGRATE_FIRST}"
            )

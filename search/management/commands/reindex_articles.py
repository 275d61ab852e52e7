from __future__ import annotations

import json
import time

from config.commands import DatabaseCommand


class Command(DatabaseCommand):
    help = (
        "Re-index the knowledge base: articles never indexed, edited, or embedded by another embedder than "
        "TRIAGE_EMBEDDER_MODEL (all of them with --force). By default one batched background task on the "
        "inference queue does it (progress: --status, or --wait); --sync does it here with a progress line."
    )

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="every article, even the up-to-date ones")
        parser.add_argument("--include-failed", action="store_true", help="retry articles whose indexing failed")
        parser.add_argument("--sync", action="store_true", help="index in this process")
        parser.add_argument("--status", action="store_true", help="only print how far indexing is")
        parser.add_argument("--wait", action="store_true", help="after queueing, print progress until done")

    def handle(self, *args, force, include_failed, sync, status, wait, **options):
        from search.indexing import reindex_all, reindex_status
        from search.tasks import configured_embedder_version

        version = configured_embedder_version()
        if status:
            self.stdout.write(json.dumps(reindex_status(version), indent=2))
            return

        started = time.monotonic()

        def progress(done: int, total: int) -> None:
            if done % 10 == 0 or done == total:
                self.stdout.write(f"  {done}/{total} articles ({time.monotonic() - started:.0f} s)")

        count = reindex_all(force=force, include_failed=include_failed, background=not sync, progress=progress)
        if sync:
            self.stdout.write(self.style.SUCCESS(f"{count} article(s) indexed with {version}"))
            return
        self.stdout.write(f"{count} article(s) queued for re-indexing with {version}")
        while wait and count:
            state = reindex_status(version)
            self.stdout.write(f"  {state['current']}/{state['articles']} current, {state['remaining']} remaining")
            if not state["remaining"]:
                break
            time.sleep(2)

"""``python manage.py diagnose_models [--tickets N] [--passages N] [--pairs N] [--json OUT] [--strict]``."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import CommandError

from config.commands import DatabaseCommand
from learning.diagnostics import (
    DEFAULT_PAIRS,
    DEFAULT_PASSAGES,
    DEFAULT_TICKETS,
    Report,
    run_diagnostics,
    save_report,
)


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        from argparse import ArgumentTypeError

        raise ArgumentTypeError(f"must be a whole number of at least 1, got {value!r}")
    return number


def format_report(report: Report) -> str:
    """The report as the command prints it: one line per check."""
    lines = [f"{c.status.upper():<4}  {c.name:<26} {c.line}" for c in report.checks]
    samples = "; ".join(f"{k}: {v}" for k, v in report.samples.items())
    lines.append(f"samples: {samples}; {report.seconds:.1f} s")
    return "\n".join(lines) + "\n"


class Command(DatabaseCommand):
    help = (
        "Check the serving models: share of tickets and passages longer than each model's window, sanity "
        "pairs (a ticket vs its helpful article and an unrelated one) for the embedder and reranker, the "
        "reranker's sensitivity to pair order, and whether its ONNX/reduced-precision path agrees with the "
        "float32 reference. One pass/warn line per check; the run is saved for the /models/diagnostics/ "
        "page. --strict exits with an error when any check warns."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tickets", type=_positive, default=DEFAULT_TICKETS, help="tickets sampled (newest)")
        parser.add_argument("--passages", type=_positive, default=DEFAULT_PASSAGES, help="passages sampled")
        parser.add_argument("--pairs", type=_positive, default=DEFAULT_PAIRS, help="sanity pairs (newest marks)")
        parser.add_argument(
            "--json", dest="json_out", metavar="OUT", help="also write the report as JSON ('-': stdout)"
        )
        parser.add_argument("--strict", action="store_true", help="exit non-zero when a check warns")

    def handle(self, *args, tickets, passages, pairs, json_out, strict, **options):
        from mlops.inference.encoders import ModelUnavailable

        try:
            report = run_diagnostics(tickets=tickets, passages=passages, pairs=pairs)
        except ModelUnavailable as exc:
            raise CommandError(f"a serving model cannot be loaded: {exc}") from None
        save_report(report)
        if json_out == "-":
            self.stdout.write(json.dumps(report.to_json(), indent=1))
        else:
            self.stdout.write(format_report(report), ending="")
            if json_out:
                Path(json_out).write_text(json.dumps(report.to_json(), indent=1), encoding="utf-8")
        if strict and report.warnings:
            names = ", ".join(c.name for c in report.warnings)
            raise CommandError(f"{len(report.warnings)} check(s) warn: {names}")

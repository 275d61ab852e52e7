from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import CommandError

from config.commands import DatabaseCommand


class Command(DatabaseCommand):
    help = (
        "Fit the relevance model (the probability that a suggested article helps) and the 'no article fits' "
        "cutoff on the stage scores of labeled queries, saved by evaluate_search --save-features (dev sets "
        "only: never a test split). Writes search/default_relevance.json or --output."
    )

    def add_arguments(self, parser):
        parser.add_argument("--features", type=Path, action="append", required=True, help="repeat per set")
        parser.add_argument("--weights", type=Path, help="fusion policy to rank with (default: the served one)")
        parser.add_argument(
            "--min-coverage",
            type=float,
            default=0.9,
            help="the cutoff is the highest that still shows a suggestion for this share of the queries that "
            "have a relevant article (default 0.9)",
        )
        parser.add_argument("--output", type=Path)

    def handle(self, *args, features, weights, min_coverage, output, **options):
        from search.fusion import active_weights, load_weights_file, weights_for
        from search.relevance import DEFAULT_RELEVANCE_FILE, fit_relevance_model

        if not 0 < min_coverage <= 1:
            raise CommandError("--min-coverage must be in (0, 1]")
        try:
            policy = load_weights_file(weights) if weights else active_weights()[0]
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        sets = []
        for path in features:
            try:
                dump = json.loads(path.read_text())
                scores, words, qrels = dump["scores"], dump["words"], dump["qrels"]
            except (OSError, ValueError, KeyError) as exc:
                raise CommandError(f"{path}: not an evaluate_search --save-features file ({exc})") from None
            sets.append((str(path), scores, qrels, lambda q, w=words, f=scores: weights_for(policy, w.get(q), f[q])))
        model = fit_relevance_model(sets, min_coverage=min_coverage)
        out = output or DEFAULT_RELEVANCE_FILE
        out.write_text(json.dumps({**model.to_json(), "min_coverage": min_coverage}, indent=2) + "\n")
        self.stdout.write(f"relevance: {dict(zip(model.to_json()['features'], model.coef, strict=True))}")
        self.stdout.write(f"cutoff p≥{model.cutoff:.4f} (coverage {min_coverage:.0%} on the fit sets); wrote {out}")

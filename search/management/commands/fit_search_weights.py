from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Fit the weights that fuse the dense, hybrid and rerank stages into the served ranking, by grid "
        "search for the best MRR@10 on labeled queries (--kb/--queries/--qrels, the evaluate_search formats) "
        "or on agents' helpful / not-helpful marks on suggestions (--from-feedback, on the live knowledge "
        "base). Stores them as the active weights (--store) and/or writes them to a JSON file (--output)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--kb", type=Path)
        parser.add_argument("--queries", type=Path)
        parser.add_argument("--qrels", type=Path)
        parser.add_argument("--from-feedback", action="store_true", help="fit on SuggestionFeedback marks")
        parser.add_argument("--min-queries", type=int, default=20, help="refuse to fit on fewer labeled queries")
        parser.add_argument("--step", type=float, default=0.05, help="grid step on the weight simplex")
        parser.add_argument("--store", action="store_true", help="save as the active FusionWeights row")
        parser.add_argument("--output", type=Path, help="write weights and fit metrics as JSON here")
        parser.add_argument("--rerank-depth", type=int)
        parser.add_argument("--cache", type=Path, help="model score cache (default .data/search-eval-cache.sqlite)")

    def handle(
        self, *args, kb, queries, qrels, from_feedback, min_queries, step, store, output, rerank_depth, cache, **options
    ):
        from search.evaluation import (
            EvaluationInputError,
            default_cache_path,
            features_for_files,
            format_table,
            load_qrels,
            load_queries,
        )
        from search.fusion import fit_weights
        from search.models import FusionWeights

        if not (store or output):
            raise CommandError("say where the weights go: --store, --output FILE, or both")
        if from_feedback == bool(kb or queries or qrels):
            raise CommandError("use either --from-feedback or all of --kb, --queries and --qrels")
        try:
            if from_feedback:
                features, labels, versions, fitted_on = self._feedback_features(rerank_depth)
                source = "feedback"
            else:
                if not (kb and queries and qrels):
                    raise CommandError("--kb, --queries and --qrels go together")
                labels = load_qrels(qrels)
                texts = {
                    q: t for q, t in load_queries(queries).items() if any(g > 0 for g in labels.get(q, {}).values())
                }
                features, versions = features_for_files(
                    kb, texts, rerank_depth=rerank_depth, cache=cache or default_cache_path(), log=self.stdout.write
                )
                source, fitted_on = "labeled", f"{kb} / {queries}"
        except EvaluationInputError as exc:
            raise CommandError(str(exc)) from None
        labeled = [q for q in features.scores if any(g > 0 for g in labels.get(q, {}).values())]
        if len(labeled) < min_queries:
            raise CommandError(f"only {len(labeled)} labeled queries; need at least {min_queries} (--min-queries)")

        fit = fit_weights(features.scores, labels, step=step)
        self.stdout.write(format_table(fit.metrics))
        self.stdout.write("weights: " + ", ".join(f"{k}={v:.3f}" for k, v in fit.weights.items()))
        payload = {
            "weights": fit.weights,
            "source": source,
            "fitted_on": fitted_on,
            "n_queries": fit.n_queries,
            "step": step,
            "fit_metrics": fit.metrics,
            **versions,
        }
        if output:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(json.dumps(payload, indent=2) + "\n")
            self.stdout.write(f"wrote {output}")
        if store:
            row = FusionWeights.objects.create(
                weights=fit.weights,
                source=source,
                n_queries=fit.n_queries,
                metrics=fit.metrics,
                embedder_version=versions.get("embedder", ""),
                reranker_version=versions.get("reranker", ""),
            )
            self.stdout.write(self.style.SUCCESS(f"stored as the active weights (FusionWeights #{row.pk})"))

    def _feedback_features(self, rerank_depth):
        """Tickets with at least one helpful mark, searched against the live knowledge base.

        The latest mark per (ticket, article) wins; not-helpful marks are explicit grade-0 labels.
        """
        from mlops.inference.encoders import get_cross_encoder, get_embedder
        from search.evaluation import collect_features
        from search.models import Article, SuggestionFeedback

        latest: dict[str, dict[str, int]] = {}
        for ticket_id, article_id, helpful in SuggestionFeedback.objects.order_by("created_at", "id").values_list(
            "ticket_id", "article_id", "helpful"
        ):
            latest.setdefault(str(ticket_id), {})[str(article_id)] = int(helpful)
        labels = {t: marks for t, marks in latest.items() if any(marks.values())}
        if not labels:
            raise CommandError("no ticket has a helpful mark yet")
        from triage.models import Ticket

        texts = {str(t.pk): t.text for t in Ticket.objects.filter(pk__in=[int(t) for t in labels])}
        id_map = {pk: str(pk) for pk in Article.objects.values_list("pk", flat=True)}
        embedder, cross_encoder = get_embedder(), get_cross_encoder()
        features = collect_features(
            texts, id_map, embedder=embedder, cross_encoder=cross_encoder, rerank_depth=rerank_depth
        )
        versions = {"embedder": embedder.version, "reranker": cross_encoder.version}
        return features, labels, versions, f"feedback on {len(texts)} tickets"

from __future__ import annotations

import json
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Evaluate article retrieval on labeled queries: MRR@10, NDCG@10 and Recall@100 of dense only, "
        "hybrid (dense + full-text, RRF), hybrid + cross-encoder rerank, and the final ranking the app "
        "serves (the fused stages with the active fusion policy). Formats: KB JSONL lines "
        '{"id","title","body"}; queries TSV qid<TAB>text; qrels TSV qid<TAB>article_id<TAB>relevance. '
        "The KB is indexed into throw-away tables: the live knowledge base is not touched."
    )

    def add_arguments(self, parser):
        parser.add_argument("--kb", type=Path, required=True)
        parser.add_argument("--queries", type=Path, required=True)
        parser.add_argument("--qrels", type=Path, required=True)
        parser.add_argument("--json", dest="json_out", type=Path, help="write the metrics as JSON here")
        parser.add_argument("--weights", type=Path, help="fusion weights JSON (default: the ones the app serves)")
        parser.add_argument("--rerank-depth", type=int, help="default: SEARCH_RERANK_DEPTH (30)")
        parser.add_argument("--dense-n", type=int, help="default: SEARCH_DENSE_CANDIDATES (100)")
        parser.add_argument("--lexical-n", type=int, help="default: SEARCH_LEXICAL_CANDIDATES (100)")
        parser.add_argument("--cache", type=Path, help="model score cache (default .data/search-eval-cache.sqlite)")
        parser.add_argument("--no-cache", action="store_true")
        parser.add_argument(
            "--cross-fit",
            type=int,
            metavar="FOLDS",
            help="also report final_cv: the final ranking with weights fitted on this set by FOLDS-fold "
            "cross-fitting (each query ranked by weights fitted on the other folds)",
        )

    def handle(
        self,
        *args,
        kb,
        queries,
        qrels,
        json_out,
        weights,
        rerank_depth,
        dense_n,
        lexical_n,
        cache,
        no_cache,
        cross_fit,
        **options,
    ):
        from search.evaluation import (
            EvaluationInputError,
            default_cache_path,
            evaluate,
            features_for_files,
            format_table,
            latency_summary,
            load_qrels,
            load_queries,
        )
        from search.fusion import active_weights, load_weights_file

        for path in (kb, queries, qrels):
            if not path.is_file():
                raise CommandError(f"{path}: no such file")
        try:
            query_texts = load_queries(queries)
            labels = load_qrels(qrels)
        except EvaluationInputError as exc:
            raise CommandError(str(exc)) from None
        unlabeled = [q for q in query_texts if not any(g > 0 for g in labels.get(q, {}).values())]
        if unlabeled:
            self.stderr.write(f"{len(unlabeled)} query(ies) have no relevant article in the qrels and are skipped")
            query_texts = {q: t for q, t in query_texts.items() if q not in unlabeled}
        if not query_texts:
            raise CommandError("no query has a relevant article in the qrels")
        try:
            fusion, source = (load_weights_file(weights), f"file:{weights}") if weights else active_weights()
        except ValueError as exc:
            raise CommandError(str(exc)) from None

        started = time.monotonic()
        try:
            features, versions = features_for_files(
                kb,
                query_texts,
                rerank_depth=rerank_depth,
                dense_n=dense_n,
                lexical_n=lexical_n,
                cache=None if no_cache else (cache or default_cache_path()),
                log=self.stdout.write,
            )
        except EvaluationInputError as exc:
            raise CommandError(str(exc)) from None
        metrics = evaluate(features, labels, fusion)
        fold_weights = []
        if cross_fit:
            from search.fusion import cross_fitted_metrics

            metrics["final_cv"], fold_policies = cross_fitted_metrics(
                features.scores,
                labels,
                folds=cross_fit,
                words=features.words,
                short_max_words=fusion.short_max_words,
            )
            fold_weights = [p.to_json() for p in fold_policies]
        self.stdout.write("")
        self.stdout.write(format_table(metrics))
        self.stdout.write(f"final = fused stages with weights {fusion.describe()} ({source})")
        if fusion.short_max_words is not None:
            short = sum(1 for q in features.scores if fusion.regime(features.words[q]) == "short")
            self.stdout.write(
                f"queries by length: {short} short (≤{fusion.short_max_words} words), "
                f"{len(features.scores) - short} longer"
            )
        best = max(("dense", "hybrid", "rerank"), key=lambda s: metrics[s]["mrr@10"])
        self.stdout.write(
            f"best single stage by MRR@10: {best} ({metrics[best]['mrr@10']:.4f}); final "
            f"{metrics['final']['mrr@10']:.4f} ({metrics['final']['mrr@10'] - metrics[best]['mrr@10']:+.4f}); "
            f"final vs dense {100 * (metrics['final']['mrr@10'] / max(metrics['dense']['mrr@10'], 1e-9) - 1):+.1f} %"
        )
        if cross_fit:
            self.stdout.write(
                f"final_cv: weights fitted on this set, {cross_fit}-fold cross-fitted; fold weights "
                + " | ".join(p.describe() for p in fold_policies)
            )
        if json_out:
            payload = {
                **metrics,
                "meta": {
                    "kb": str(kb),
                    "queries": str(queries),
                    "qrels": str(qrels),
                    "weights": fusion.to_json(),
                    "weights_source": source,
                    "cross_fit_fold_weights": fold_weights,
                    **versions,
                    "latency": latency_summary(features),
                    "seconds": round(time.monotonic() - started, 1),
                },
            }
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(payload, indent=2) + "\n")
            self.stdout.write(f"wrote {json_out}")

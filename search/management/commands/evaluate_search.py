from __future__ import annotations

import json
import time
from pathlib import Path

from django.core.management.base import CommandError

from config.commands import DatabaseCommand


class Command(DatabaseCommand):
    help = (
        "Evaluate article retrieval on labeled queries: MRR@10, NDCG@10 and Recall@100 of dense only, "
        "hybrid (dense + full-text, RRF), hybrid + cross-encoder rerank, and the final ranking the app "
        "serves (the fused stages with the active fusion policy). Formats: KB JSONL lines "
        '{"id","title","body"}; queries TSV qid<TAB>text; qrels TSV qid<TAB>article_id<TAB>relevance. '
        "The KB is indexed into throw-away copies of the search tables (so the database must be migrated): "
        "the live knowledge base is not touched."
    )

    def add_arguments(self, parser):
        parser.add_argument("--kb", type=Path, required=True)
        parser.add_argument("--queries", type=Path, required=True)
        parser.add_argument("--qrels", type=Path, required=True)
        parser.add_argument(
            "--feedback",
            type=Path,
            help="agents' past marks, TSV with a header text<TAB>article_id<TAB>helpful: learned as questions "
            "of the KB, adds the stage 'feedback', and final is the policy a deployment would serve after "
            "fitting on these marks (guarded on marks held out of the fit)",
        )
        parser.add_argument(
            "--allow-marks-on-queries",
            action="store_true",
            help="accept marks on tickets that are also queries (refused by default: the feedback stage would "
            "read their answers); only for --save-features runs whose reader leaves each query's own marks out",
        )
        parser.add_argument("--save-features", type=Path, help="write every query's stage scores as JSON here")
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
        feedback,
        allow_marks_on_queries,
        save_features,
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
            without_feedback,
        )
        from search.fitting import guarded_fit
        from search.fusion import active_weights, load_weights_file, weights_for
        from search.relevance import apply_model, cutoff_metrics, load_relevance_model

        for path in (kb, queries, qrels, *([feedback] if feedback else [])):
            if not path.is_file():
                raise CommandError(f"{path}: no such file")
        try:
            query_texts = load_queries(queries)
            labels = load_qrels(qrels)
        except EvaluationInputError as exc:
            raise CommandError(str(exc)) from None
        unlabeled = [q for q in query_texts if not any(g > 0 for g in labels.get(q, {}).values())]
        if len(unlabeled) == len(query_texts):
            raise CommandError("no query has a relevant article in the qrels")
        if unlabeled:
            self.stdout.write(
                f"{len(unlabeled)} query(ies) have no relevant article: not in the ranking metrics, "
                "counted as no-answer queries by the cutoff"
            )
        try:
            fusion, source = (load_weights_file(weights), f"file:{weights}") if weights else active_weights()
        except ValueError as exc:
            raise CommandError(str(exc)) from None

        started = time.monotonic()
        try:
            run = features_for_files(
                kb,
                query_texts,
                feedback=feedback,
                marks_on_queries=allow_marks_on_queries,
                rerank_depth=rerank_depth,
                dense_n=dense_n,
                lexical_n=lexical_n,
                cache=None if no_cache else (cache or default_cache_path()),
                log=self.stdout.write,
            )
        except EvaluationInputError as exc:
            raise CommandError(str(exc)) from None
        features, versions = run.features, run.versions
        served, guard = fusion, None
        if run.marks is not None:
            guard = guarded_fit(run.marks, fusion)
            served = guard.policy
        metrics = evaluate(features, labels, served)
        if run.marks is None:
            del metrics["feedback"]  # the dense stage itself when nothing was learned
        else:
            metrics["final_without_feedback"] = evaluate(without_feedback(features), labels, fusion)["final"]
        relevance = load_relevance_model()
        if relevance is not None:
            probabilities, finals = apply_model(
                relevance, features.scores, lambda q: weights_for(served, features.words.get(q), features.scores[q])
            )
            metrics["cutoff"] = cutoff_metrics(probabilities, finals, labels, relevance.cutoff)
        fold_weights = []
        if cross_fit:
            from search.fitting import cross_fitted_metrics

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
        self.stdout.write(f"final = fused stages with weights {served.describe()} ({source})")
        if guard is not None:
            held = ", ".join(f"{k} {v:.4f}" for k, v in guard.held_out.items())
            self.stdout.write(
                f"fitted on {guard.n_queries} past tickets' marks; served: {guard.chosen} "
                f"(held-out objective: {held or 'too few marks to fit'})"
            )
        if fusion.short_max_words is not None:
            short = sum(1 for q in features.scores if fusion.regime(features.words[q]) == "short")
            self.stdout.write(
                f"queries by length: {short} short (≤{fusion.short_max_words} words), "
                f"{len(features.scores) - short} longer"
            )
        best = max(("dense", "hybrid", "rerank", "feedback"), key=lambda s: metrics.get(s, {}).get("mrr@10", -1))
        self.stdout.write(
            f"best single stage by MRR@10: {best} ({metrics[best]['mrr@10']:.4f}); final "
            f"{metrics['final']['mrr@10']:.4f} ({metrics['final']['mrr@10'] - metrics[best]['mrr@10']:+.4f}); "
            f"final vs dense {100 * (metrics['final']['mrr@10'] / max(metrics['dense']['mrr@10'], 1e-9) - 1):+.1f} %"
        )
        if "cutoff" in metrics:
            c = metrics["cutoff"]
            silent = "—" if c["no_answer_silent"] is None else f"{c['no_answer_silent']:.3f}"
            self.stdout.write(
                f"cutoff p≥{c['cutoff']:.3f}: coverage {c['coverage']:.3f}, precision of the first suggestion "
                f"{c['precision']:.3f}, no-answer queries left without a suggestion {silent} "
                f"(of {c['no_answer_queries']})"
            )
        if cross_fit:
            self.stdout.write(
                f"final_cv: weights fitted on this set, {cross_fit}-fold cross-fitted; fold weights "
                + " | ".join(p.describe() for p in fold_policies)
            )
        if save_features:
            save_features.parent.mkdir(parents=True, exist_ok=True)
            dump = {"scores": features.scores, "words": features.words, "qrels": labels}
            if run.marks is not None:
                dump["marks"] = {"scores": run.marks.features, "words": run.marks.words, "qrels": run.marks.qrels}
            save_features.write_text(json.dumps(dump))
        if json_out:
            payload = {
                **metrics,
                "meta": {
                    "kb": str(kb),
                    "queries": str(queries),
                    "qrels": str(qrels),
                    "weights": served.to_json(),
                    "weights_source": source,
                    "weights_in_force": fusion.to_json(),
                    "feedback": str(feedback) if feedback else None,
                    "guard": {"chosen": guard.chosen, "held_out": guard.held_out, "n_tickets": guard.n_queries}
                    if guard
                    else None,
                    "no_answer_queries": len(unlabeled),
                    "cross_fit_fold_weights": fold_weights,
                    **versions,
                    "latency": latency_summary(features),
                    "seconds": round(time.monotonic() - started, 1),
                },
            }
            json_out.parent.mkdir(parents=True, exist_ok=True)
            json_out.write_text(json.dumps(payload, indent=2) + "\n")
            self.stdout.write(f"wrote {json_out}")

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import CommandError

from config.commands import DatabaseCommand
from search.fusion import DEFAULT_SHORT_MAX_WORDS


class Command(DatabaseCommand):
    help = (
        "Fit the fusion policy that combines the dense, hybrid and rerank stages into the served ranking: "
        "one weight vector for short queries (at most --short-max-words words) and one for longer ones, "
        "found by grid search on labeled queries (--kb/--queries/--qrels, the evaluate_search formats; "
        "repeat --queries/--qrels, and --kb if they differ, to fit on several sets at once, maximising the "
        "worst set's margin over its own best single stage) or on agents' helpful / not-helpful marks on "
        "suggestions (--from-feedback, on the live knowledge base). Stores it as the active policy "
        "(--store) and/or writes it to a JSON file (--output)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--kb", type=Path, action="append", default=[], help="once, or once per --queries")
        parser.add_argument("--queries", type=Path, action="append", default=[])
        parser.add_argument("--qrels", type=Path, action="append", default=[])
        parser.add_argument("--from-feedback", action="store_true", help="fit on SuggestionFeedback marks")
        parser.add_argument("--min-queries", type=int, default=20, help="refuse to fit on fewer labeled queries")
        parser.add_argument("--step", type=float, default=0.05, help="grid step on the weight simplex")
        parser.add_argument(
            "--short-max-words",
            type=int,
            default=DEFAULT_SHORT_MAX_WORDS,
            help=f"queries of at most this many words get their own weights (default {DEFAULT_SHORT_MAX_WORDS}); "
            "0 fits one vector for every query",
        )
        parser.add_argument(
            "--stages",
            default="dense,hybrid,rerank",
            help="stages to weigh, comma-separated (dense,hybrid for queries the cross-encoder does not read)",
        )
        parser.add_argument(
            "--prefer-dense",
            type=float,
            metavar="TOL",
            help="among policies within TOL of the best worst-set margin, take the one leaning most on dense "
            "(for a default that must carry over to help centres it was not fitted on)",
        )
        parser.add_argument(
            "--as-unreranked-of",
            type=Path,
            metavar="POLICY_JSON",
            help="write POLICY_JSON's policy with this fit as its vectors for queries that are not reranked",
        )
        parser.add_argument("--store", action="store_true", help="save as the active FusionWeights row")
        parser.add_argument("--output", type=Path, help="write the policy and fit metrics as JSON here")
        parser.add_argument("--rerank-depth", type=int)
        parser.add_argument("--cache", type=Path, help="model score cache (default .data/search-eval-cache.sqlite)")

    def handle(
        self,
        *args,
        kb,
        queries,
        qrels,
        from_feedback,
        min_queries,
        step,
        short_max_words,
        store,
        output,
        rerank_depth,
        cache,
        stages,
        prefer_dense,
        as_unreranked_of,
        **options,
    ):
        from search.evaluation import EvaluationInputError, format_table
        from search.fitting import fit_policy
        from search.models import FusionWeights

        if not (store or output):
            raise CommandError("say where the weights go: --store, --output FILE, or both")
        if from_feedback == bool(kb or queries or qrels):
            raise CommandError("use either --from-feedback or all of --kb, --queries and --qrels")
        if not 0 < step <= 0.5:
            raise CommandError("--step must be in (0, 0.5]")
        if short_max_words < 0:
            raise CommandError("--short-max-words must be 0 (one vector) or a positive number of words")
        try:
            if from_feedback:
                return self._refit_from_marks(min_queries, rerank_depth, store, output, step)
            else:
                sets, versions, fitted_on = self._labeled_sets(kb, queries, qrels, rerank_depth, cache)
                source = "labeled"
        except EvaluationInputError as exc:
            raise CommandError(str(exc)) from None
        n_labeled = sum(len(s.labeled()) for s in sets)
        if n_labeled < min_queries:
            raise CommandError(f"only {n_labeled} labeled queries; need at least {min_queries} (--min-queries)")

        from search.fusion import STAGES

        chosen = tuple(s.strip() for s in stages.split(",") if s.strip())
        if not chosen or set(chosen) - set(STAGES):
            raise CommandError(f"--stages: choose among {', '.join(STAGES)}")
        fit = fit_policy(
            sets, step=step, short_max_words=short_max_words or None, stages=chosen, prefer_dense=prefer_dense
        )
        policy = fit.policy
        if as_unreranked_of:
            from dataclasses import replace

            from search.fusion import load_weights_file

            try:
                policy = replace(load_weights_file(as_unreranked_of), unreranked=fit.policy)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
        for name, metrics in fit.per_set.items():
            if len(fit.per_set) > 1:
                self.stdout.write(f"{name}:")
            self.stdout.write(format_table(metrics))
        self.stdout.write(f"weights: {policy.describe()}")
        self.stdout.write(f"worst set's final objective minus its best stage's: {fit.margin:+.4f}")
        payload = {
            "weights": policy.to_json(),
            "source": source,
            "fitted_on": fitted_on,
            "n_queries": fit.n_queries,
            "step": step,
            "stages": list(chosen),
            "prefer_dense": prefer_dense,
            "margin": fit.margin,
            "fit_metrics": fit.metrics,
            "per_set_metrics": fit.per_set,
            **versions,
        }
        if as_unreranked_of:
            # The file it extends keeps its own fit record; this fit is recorded beside it.
            original = json.loads(as_unreranked_of.read_text())
            original = original if "weights" in original else {"weights": original}
            payload = {**original, "weights": policy.to_json(), "unreranked_fit": payload}
        if output:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(json.dumps(payload, indent=2) + "\n")
            self.stdout.write(f"wrote {output}")
        if store:
            row = FusionWeights.objects.create(
                weights=policy.to_json(),
                source=source,
                n_queries=fit.n_queries,
                metrics={**fit.metrics, "per_set": fit.per_set, "margin": fit.margin},
                embedder_version=versions.get("embedder", ""),
                reranker_version=versions.get("reranker", ""),
            )
            self.stdout.write(self.style.SUCCESS(f"stored as the active weights (FusionWeights #{row.pk})"))

    def _labeled_sets(self, kbs, queries, qrels, rerank_depth, cache):
        from search.evaluation import default_cache_path, features_for_files, load_qrels, load_queries
        from search.fitting import LabeledSet

        if not (kbs and queries and qrels):
            raise CommandError("--kb, --queries and --qrels go together")
        if len(queries) != len(qrels):
            raise CommandError(f"{len(queries)} --queries but {len(qrels)} --qrels: give them in pairs")
        if len(kbs) not in (1, len(queries)):
            raise CommandError(f"give --kb once, or once per --queries ({len(queries)}), not {len(kbs)} times")
        for path in [*kbs, *queries, *qrels]:
            if not path.is_file():
                raise CommandError(f"{path}: no such file")
        kbs = kbs * len(queries) if len(kbs) == 1 else kbs
        sets, versions, described = [], {}, []
        for kb_path, queries_path, qrels_path in zip(kbs, queries, qrels, strict=True):
            labels = load_qrels(qrels_path)
            texts = {
                q: t for q, t in load_queries(queries_path).items() if any(g > 0 for g in labels.get(q, {}).values())
            }
            self.stdout.write(f"set {queries_path}:")
            run = features_for_files(
                kb_path, texts, rerank_depth=rerank_depth, cache=cache or default_cache_path(), log=self.stdout.write
            )
            features, versions = run.features, run.versions
            name = str(queries_path) if len(set(queries)) == len(queries) else f"{queries_path}#{len(sets) + 1}"
            sets.append(LabeledSet(name, features.scores, labels, features.words))
            described.append(f"{kb_path} / {queries_path}")
        return sets, versions, "; ".join(described)

    def _refit_from_marks(self, min_queries, rerank_depth, store, output, step):
        """The deployment's own refit (as the daily task runs it), on the rolling window of marks."""
        from search.adapt import refit_from_marks

        refit = refit_from_marks(min_tickets=min_queries, rerank_depth=rerank_depth, store=store, step=step)
        guard = refit.guard
        if not guard.held_out:
            raise CommandError(f"only {guard.n_queries} marked tickets; need at least {min_queries} (--min-queries)")
        self.stdout.write(f"{guard.n_queries} marked tickets; held-out objective (MRR@10 + ½·NDCG@10):")
        for name, value in guard.held_out.items():
            self.stdout.write(f"  {name:<9} {value:.4f}")
        self.stdout.write(f"served: {guard.chosen} — {guard.policy.describe()}")
        if output:
            output.parent.mkdir(parents=True, exist_ok=True)
            payload = {"weights": guard.policy.to_json(), "source": "feedback", "chosen": guard.chosen}
            output.write_text(json.dumps({**payload, "held_out": guard.held_out, **refit.versions}, indent=2) + "\n")
        if refit.stored is not None:
            self.stdout.write(self.style.SUCCESS(f"stored as the active weights (FusionWeights #{refit.stored.pk})"))
        elif store:
            self.stdout.write("the policy in force stays: nothing stored")

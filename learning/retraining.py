"""The retraining run itself (in the ``training`` worker): agents' labels → a SetFit challenger →
evaluated against the champion → promoted or not.

``run_training`` collects the labels (``learning.labels``), splits them (``learning.split``: a ticket
held out once stays held out; teams with fewer labels than the minimum are not trained on: they keep
zero-shot scores and all their labels are held out), trains SetFit via ``train_setfit``, scores
champion and challenger on the same held-out labels (leaving out any the champion was trained on),
fits the challenger's temperature and per-team thresholds on its held-out predictions, then
``mlops.registry.promote_version`` when its macro-F1 beats the champion's by
``TRIAGE_PROMOTION_MARGIN`` (``learning.evaluation.compare_challenger``); otherwise the version is
rejected with the reason. The champion is the current champion's scorer (zero-shot or an earlier
SetFit version), or the configured zero-shot scorer when there is none.

Thresholds fitted here are stored on the version as proposals, like ``learning.calibrate.calibrate_version``
stores them for zero-shot versions: the temperature applies as soon as the version serves, the team
thresholds (``Team.threshold``) stay what admins set on the tuning page.

A failure at any step marks the run and the version failed with the error; the champion is only
ever changed by ``promote_version``, in one transaction, so it keeps serving.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings

from mlops.inference.scorers import ClassSpec, InvalidInput
from mlops.models import ModelVersion

from .evaluation import calibrate, evaluate, promotion_verdict, public_metrics, scores_of, team_classes
from .labels import collect_labels, data_hash
from .recipe import make_recipe
from .recording import RunRecorder, record_decision
from .split import split_examples

logger = logging.getLogger(__name__)


class TrainingError(Exception):
    """Training cannot go on for a reason an admin can fix (too few labels, bad data, ...)."""


def artifact_dir(version: ModelVersion, digest: str) -> Path:
    """``<TRIAGE_ARTIFACTS_DIR>/setfit/<version>-<data hash>``: a reset database reusing a version name
    never overwrites another model's files."""
    return Path(settings.TRIAGE_ARTIFACTS_DIR) / "setfit" / f"{version.version}-{digest[:12]}"


def champion_scorer(champion: ModelVersion | None):
    """The scorer the champion routes with, and its name for the report: ``(scorer, name)``.

    With no champion (or one that cannot load here), the configured zero-shot scorer stands in for it:
    that is what routes tickets when no trained model serves.
    """
    from mlops.inference.encoders import ModelUnavailable
    from mlops.inference.registry import get_zero_shot_scorer, scorer_for_version

    if champion is not None:
        try:
            return scorer_for_version(champion), champion.version
        except ModelUnavailable as exc:
            logger.warning("champion %s cannot load (%s); comparing with the zero-shot scorer", champion, exc)
    scorer = get_zero_shot_scorer()
    return scorer, f"zero-shot ({scorer.name})"


def run_training(version_id: int) -> ModelVersion:
    """Train, evaluate, calibrate and promote or reject version ``version_id``; its run must be running.

    Raises on failure (the task records it); the champion is changed only by ``promote_version``.
    """
    from mlops.inference.setfit_recipe import train_setfit
    from mlops.inference.setfit_scorer import SetFitScorer, save_model

    version = ModelVersion.objects.select_related("training_run").get(pk=version_id)
    run = version.training_run
    rec = RunRecorder(run)
    started = time.monotonic()

    rec.stage("collecting labels")
    labels = collect_labels(until=version.created_at)
    need = int(version.config.get("min_labels_per_team", settings.TRIAGE_RETRAIN_MIN_LABELS_PER_TEAM))
    fraction = float(version.config.get("holdout_fraction", settings.TRIAGE_RETRAIN_HOLDOUT))
    margin = float(version.config.get("promotion_margin", settings.TRIAGE_PROMOTION_MARGIN))
    digest = data_hash(labels.examples, {"min_per_team": need, "holdout": fraction})
    seed = int(digest[:8], 16) % (2**31)  # same labels, same training
    split = split_examples(labels.examples, min_per_team=need, fraction=fraction)
    report = labels.report()
    rec.log(
        "%d labelled tickets: %d used, excluded %s, remapped %s",
        report["labelled_tickets"],
        report["used"],
        report["excluded"] or "none",
        report["remapped"] or "none",
    )
    ModelVersion.objects.filter(pk=version.pk).update(label_counts=labels.counts, data_hash=digest)
    if len(split.trained_teams) < 2:
        raise TrainingError(
            f"need at least two active teams with {need} labels each to train; label counts: "
            f"{labels.counts or 'no labels'}"
        )
    classes = team_classes()
    slugs = [c.slug for c in classes]
    stray = sorted({e.label for e in split.holdout} - set(slugs))
    if stray:  # cannot happen (labels resolve to active teams), but an evaluation must never skip a label
        raise TrainingError(f"held-out labels of teams that are not routing classes: {stray}")
    rec.log(
        "split: %d train (%s), %d held out; zero-shot teams: %s",
        len(split.train),
        ", ".join(split.trained_teams),
        len(split.holdout),
        ", ".join(split.zero_shot_teams) or "none",
    )

    rec.stage("training")
    # The recipe recorded when the run was requested, so that a settings change cannot alter a queued run.
    recipe = make_recipe(version.config["recipe"]) if "recipe" in version.config else make_recipe()

    from mlops.inference.encoders import resolve_model_ref

    base = resolve_model_ref(version.config.get("base_model") or settings.TRIAGE_EMBEDDER_MODEL)
    texts = fit_for_training(base, [e.text for e in split.train], recipe.max_length)
    descriptions = label_descriptions(c for c in classes if c.slug in split.trained_teams)
    train_started = time.monotonic()
    model = train_setfit(
        texts,
        [e.label for e in split.train],
        base_model=base,
        recipe=recipe,
        label_descriptions=descriptions,
        progress=rec.progress,
        device=_training_device(),
        seed=seed,
    )
    training_seconds = time.monotonic() - train_started

    rec.stage("saving")
    target = save_model(
        model,
        artifact_dir(version, digest),
        texts=texts,
        labels=[e.label for e in split.train],
        meta={
            "version": version.version,
            "data_hash": digest,
            "base_model": version.config.get("base_model"),
            "recipe": dataclasses.asdict(recipe),
            "trained_teams": split.trained_teams,
            "zero_shot_teams": split.zero_shot_teams,
            # Which tickets this version learnt from: a later challenger is not compared with it on them.
            "train_ticket_ids": [e.ticket_id for e in split.train],
        },
        seed=seed,
    )
    del model

    rec.stage("evaluating")
    holdout_texts = [e.text for e in split.holdout]
    holdout_labels = [e.label for e in split.holdout]
    champion = ModelVersion.objects.champion()
    baseline, baseline_name = champion_scorer(champion)
    # Untrained teams are scored by the configured zero-shot scorer, exactly as when this version serves.
    challenger = SetFitScorer(target, version=version.version)
    held_out = evaluate(challenger, holdout_texts, holdout_labels, classes)
    # Both are compared on the same tickets, none of which either model was trained on.
    seen = set((getattr(baseline, "meta", None) or {}).get("train_ticket_ids") or [])
    keep = [i for i, e in enumerate(split.holdout) if e.ticket_id not in seen]
    if not keep:
        raise TrainingError("every held-out ticket was in the champion's training set: nothing to compare on")
    compared_labels = [holdout_labels[i] for i in keep]
    new = {**scores_of(held_out["logits"][keep], compared_labels, slugs), "scorer": challenger.name}
    try:
        old = evaluate(baseline, [holdout_texts[i] for i in keep], compared_labels, classes)
    except InvalidInput as exc:  # a self-trained champion knows only the teams it was fitted on
        rec.log("champion %s cannot score today's teams (%s); comparing with the zero-shot scorer", baseline_name, exc)
        baseline, baseline_name = champion_scorer(None)
        old = evaluate(baseline, [holdout_texts[i] for i in keep], compared_labels, classes)
    rec.log(
        "macro-F1 on %d held-out tickets: challenger %.3f (accuracy %.3f), champion %s %.3f (accuracy %.3f)%s",
        len(keep),
        new["macro_f1"],
        new["accuracy"],
        baseline_name,
        old["macro_f1"],
        old["accuracy"],
        f"; {len(split.holdout) - len(keep)} held-out tickets left out: the champion trained on them" if seen else "",
    )

    rec.stage("calibrating")
    calibration, thresholds, threshold_details = calibrate(held_out["logits"], holdout_labels, slugs)
    rec.log(
        "temperature %.3f (NLL %.3f → %.3f); per-team thresholds for %d of %d teams, pooled %.3f for the rest",
        calibration["temperature"],
        calibration["nll_before"],
        calibration["nll_after"],
        sum(1 for d in threshold_details["per_team"].values() if d.get("source") == "class"),
        len(slugs),
        threshold_details["fallback_threshold"],
    )

    promote, verdict = promotion_verdict(new["macro_f1"], old["macro_f1"], margin)
    reason = verdict["reason"]
    metrics = {
        **verdict,
        "challenger": new,
        "champion": {**public_metrics(old), "version": baseline_name},
        "split": {
            "train": len(split.train),
            "holdout": len(split.holdout),
            "compared": len(keep),
            "trained_teams": split.trained_teams,
            "zero_shot_teams": split.zero_shot_teams,
        },
        "labels": report,
        "thresholds": threshold_details,
    }
    record_decision(
        version,
        promote=promote,
        reason=reason,
        fields={
            "artifact_path": str(target),
            "metrics": metrics,
            "calibration": calibration,
            "thresholds": thresholds,
            "training_seconds": round(training_seconds, 2),
            "config": {
                **version.config,
                "trained_teams": split.trained_teams,
                "zero_shot_teams": split.zero_shot_teams,
            },
        },
    )
    rec.log("%s: %s (%.0f s in all)", "promoted" if promote else "rejected", reason, time.monotonic() - started)
    version.refresh_from_db()
    return version


def label_descriptions(classes: Iterable[ClassSpec]) -> dict[str, str]:
    """What SetFit learns of each team besides its labelled tickets: "Name. Description" (the recipe adds
    it as one more example of the team, see ``train_setfit``)."""
    return {c.slug: f"{c.name}. {c.description}".strip() for c in classes}


def fit_for_training(base_model_path: str, texts: list[str], max_length: int) -> list[str]:
    """Tickets as the scorer will read them: the ask (no greeting, signature or quoted reply), long
    ones cut to their head and tail within the model's window."""
    from mlops.inference.scorers import TextFitter
    from mlops.text import clean_ask

    texts = [clean_ask(text) for text in texts]
    fitter = TextFitter.for_model_dir(base_model_path)
    return fitter.fit(texts, max(8, max_length - 2)) if fitter else texts


def _training_device() -> str:
    from mlops.inference.encoders import resolve_device

    return resolve_device(settings.TRIAGE_INFERENCE_DEVICE)

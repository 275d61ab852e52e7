"""A SetFit head per tag set, trained on agents' tag labels, promoted by the routing rule.

* ``collect_tag_examples(tag_set)`` — one row per labelled ticket: its 0/1 per current tag of the set
  and which of them a person said. In a single-label set a ticket counts once an agent added one of
  its tags (the add also says the others do not fit); in a multi-label set each tag an agent added
  or removed is said, and a tag nobody touched reads as what the ticket showed (its latest
  prediction's ``is_set``: the agent saw it and left it) for training only, never for evaluation.
* ``check_tag_labels(tag_set)`` — whether the set can be trained: active, zero-shot, and every current
  tag has ``TRIAGE_TAG_MIN_LABELS_PER_TAG`` tickets labelled as fitting it (with the counts, for the
  page and the refusal).
* ``check_tag_trigger(tag_set)`` — the beat's trigger: ``check_tag_labels``, and
  ``TRIAGE_RETRAIN_MIN_NEW_LABELS`` tag labels arrived since the set's last training.
* ``request_tag_training`` queues the run, by the beat or an admin's "Train tags" (``learning.views_registry``):
  refused (``TagTrainingRefused``) when ``check_tag_labels`` says no, and at most one training of any kind
  at a time (``learning.trigger.queue_run``). The run reports its steps like routing's (``RunRecorder``).
* ``run_tag_training(version_id)`` — in the training worker: held-out tickets (a stable hash of the
  ticket id: a ticket held out once stays held out), train (``mlops.inference.setfit_tags``: one-vs-rest
  head for a multi-label set, the normal head for a single-label one), then the challenger and the
  serving tag scorer (the set's champion, else the zero-shot tag scorer with its calibrations and
  thresholds) are scored on the same held-out labels by macro-F1 over the set's tags
  (``mlops.calibration``), and ``learning.evaluation.compare_challenger`` decides, as for routing.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings

from mlops import calibration as cal
from mlops.models import ModelVersion, tag_task
from mlops.registry import TAG_TRAINED_SCORER
from tags.models import TagLabel, TagPrediction, TagSet
from tags.scoring import TagSetSpec, champion_tag_scores, score_tag_set, zero_shot_scorer
from triage.models import Ticket

from .evaluation import promotion_verdict
from .recording import RunRecorder, record_decision
from .retraining import TrainingError, _training_device
from .trigger import queue_run

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TagExamples:
    labels: list[str]  # tag slugs, column order (the set's current tags by slug, as the scorer orders them)
    ticket_ids: list[int]
    texts: list[str]
    y: np.ndarray  # (n, k) 0/1
    known: np.ndarray  # (n, k) bool: a person said it

    def positives(self) -> dict[str, int]:
        return {slug: int((self.y[:, j] & self.known[:, j]).sum()) for j, slug in enumerate(self.labels)}


def collect_tag_examples(tag_set: TagSet, *, until=None, texts: bool = True) -> TagExamples:
    """The set's labelled tickets (module docstring), in ticket order; ``texts=False`` leaves the texts
    empty (counting labels for a page needs no ticket text)."""
    tags = list(tag_set.tags.current().order_by("slug"))
    column = {t.pk: j for j, t in enumerate(tags)}
    labels = TagLabel.objects.filter(tag__in=tags)
    if until is not None:
        labels = labels.filter(created_at__lte=until)
    said: dict[int, dict[int, tuple[str, object]]] = {}  # ticket → column → (action, when)
    for ticket_id, tag_id, action, created in labels.latest_per_ticket_and_tag().values_list(
        "ticket_id", "tag_id", "action", "created_at"
    ):
        said.setdefault(ticket_id, {})[column[tag_id]] = (action, created)
    ticket_ids = sorted(said)
    shown: dict[int, dict[int, bool]] = {}
    if not tag_set.single_label:
        for ticket_id, tag_id, is_set in (
            TagPrediction.objects.filter(ticket_id__in=ticket_ids, tag__in=tags)
            .latest_per_ticket_and_tag()
            .values_list("ticket_id", "tag_id", "is_set")
        ):
            shown.setdefault(ticket_id, {})[column[tag_id]] = is_set
    rows, known, kept = [], [], []
    for ticket_id in ticket_ids:
        y, k = np.zeros(len(tags), dtype=bool), np.zeros(len(tags), dtype=bool)
        if tag_set.single_label:
            added = [(when, j) for j, (action, when) in said[ticket_id].items() if action == TagLabel.Action.ADD]
            if not added:
                continue  # removes alone do not say which tag fits
            y[max(added)[1]] = True
            k[:] = True
        else:
            for j in range(len(tags)):
                if j in said[ticket_id]:
                    y[j], k[j] = said[ticket_id][j][0] == TagLabel.Action.ADD, True
                else:
                    y[j] = shown.get(ticket_id, {}).get(j, False)
        rows.append(y)
        known.append(k)
        kept.append(ticket_id)
    text = {t.pk: t.text for t in Ticket.objects.filter(pk__in=kept).only("subject", "body")} if texts else {}
    shape = (len(kept), len(tags))
    return TagExamples(
        labels=[t.slug for t in tags],
        ticket_ids=kept,
        texts=[text[i] for i in kept] if texts else [],
        y=np.array(rows, dtype=bool).reshape(shape),
        known=np.array(known, dtype=bool).reshape(shape),
    )


def held_out(ticket_id: int, fraction: float) -> bool:
    """Whether a ticket is held out: a stable hash, so a ticket held out once stays held out."""
    digest = hashlib.sha256(f"tag-holdout:{ticket_id}".encode()).hexdigest()
    return int(digest[:8], 16) / 0xFFFFFFFF < fraction


class TagTrainingRefused(Exception):
    """A tag set's training was not queued: the reason says what is missing (labels per tag, kind of set)."""


@dataclass(frozen=True)
class TagTriggerCheck:
    fire: bool
    reason: str
    counts: dict[str, int]
    need: int = 0


def too_few_labels(counts: dict[str, int], need: int) -> str:
    """Why tags with ``counts`` labels saying they fit cannot be trained on, or "" when each has ``need``."""
    short = [f"{slug} has {n}" for slug, n in counts.items() if n < need]
    if not short:
        return ""
    return f"each tag needs {need} labels saying it fits; {', '.join(short)}"


def last_tag_training(tag_set: TagSet) -> ModelVersion | None:
    return ModelVersion.objects.filter(task=tag_task(tag_set.slug)).order_by("-created_at", "-pk").first()


def check_tag_labels(tag_set: TagSet) -> TagTriggerCheck:
    """Whether ``tag_set`` can be trained on its labels now (``fire``), with each tag's count of labels
    saying it fits and how many are needed; the reason when not."""
    need = settings.TRIAGE_TAG_MIN_LABELS_PER_TAG
    if not tag_set.active or tag_set.method != TagSet.Method.ZERO_SHOT:
        return TagTriggerCheck(False, "only active zero-shot tag sets are trained", {}, need)
    counts = collect_tag_examples(tag_set, texts=False).positives()
    short = too_few_labels(counts, need)
    if short:
        return TagTriggerCheck(False, short, counts, need)
    return TagTriggerCheck(True, f"every tag has ≥ {need} labels saying it fits", counts, need)


def check_tag_trigger(tag_set: TagSet) -> TagTriggerCheck:
    """Whether the beat should queue ``tag_set``'s training now: ``check_tag_labels`` and enough new labels."""
    check = check_tag_labels(tag_set)
    if not check.fire:
        return check
    counts, need = check.counts, check.need
    last = last_tag_training(tag_set)
    new = TagLabel.objects.filter(tag__tag_set=tag_set)
    if last is not None:
        new = new.filter(created_at__gt=last.created_at)
    need_new, n_new = settings.TRIAGE_RETRAIN_MIN_NEW_LABELS, new.count()
    if n_new < need_new:
        return TagTriggerCheck(
            False, f"{n_new} new tag labels since the last training; {need_new} needed", counts, need
        )
    return check


def request_tag_training(tag_set: TagSet, *, trigger: str, user=None, enqueue: bool = True) -> ModelVersion:
    """Queue a tag set's training on the ``training`` queue, sent once committed (``learning.trigger.queue_run``).

    Raises ``TagTrainingRefused`` (nothing stored) when ``check_tag_labels`` says the set cannot be
    trained, ``TrainingInProgress`` when any training is queued or running.

    >>> version = request_tag_training(topics, trigger="manual", user=ada)   # doctest: +SKIP
    >>> version.task, version.training_run.state                             # doctest: +SKIP
    ('tags:topics', 'queued')
    """
    check = check_tag_labels(tag_set)
    if not check.fire:
        raise TagTrainingRefused(f"{tag_set.name} cannot be trained: {check.reason}")
    version = queue_run(
        TAG_TRAINED_SCORER,
        model_ref=settings.TRIAGE_EMBEDDER_MODEL,
        trigger=trigger,
        user=user,
        enqueue=enqueue,
        task=tag_task(tag_set.slug),
        config={
            "tag_set": tag_set.slug,
            "base_model": settings.TRIAGE_EMBEDDER_MODEL,
            "min_labels_per_tag": settings.TRIAGE_TAG_MIN_LABELS_PER_TAG,
            "holdout_fraction": settings.TRIAGE_RETRAIN_HOLDOUT,
            "promotion_margin": settings.TRIAGE_PROMOTION_MARGIN,
            "steps": settings.TRIAGE_TAG_SETFIT_STEPS,
        },
    )
    logger.info(
        "tag training %s for %s requested (%s) by %s", version.version, tag_set.slug, trigger, user or "the system"
    )
    return version


def request_due_tag_training(trigger: str = "threshold") -> ModelVersion | None:
    """Beat: queue the first active tag set whose trigger fires (one run at a time; the next on a later beat)."""
    for tag_set in TagSet.objects.filter(active=True, method=TagSet.Method.ZERO_SHOT).order_by("slug"):
        check = check_tag_trigger(tag_set)
        if check.fire:
            try:
                return request_tag_training(tag_set, trigger=trigger)
            except TagTrainingRefused as exc:  # a label removed since the check: the next beat sees it
                logger.info("tag trigger %s: not now (%s)", tag_set.slug, exc)
                continue
        logger.info("tag trigger %s: not now (%s)", tag_set.slug, check.reason)
    return None


def predicted_sets(probs: np.ndarray, single_label: bool, thresholds: list[float] | None = None) -> np.ndarray:
    """Which tags each row sets: single-label the best tag (as macro-F1 over a set's tags reads it),
    multi-label each tag at or above its threshold (0.5, a head's own decision, when none is given)."""
    probs = np.nan_to_num(np.asarray(probs, dtype=np.float64), nan=-1.0)
    if single_label:
        out = np.zeros(probs.shape, dtype=bool)
        out[np.arange(len(probs)), probs.argmax(axis=1)] = True
        return out
    limits = np.full(probs.shape[1], 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    return probs >= limits[None, :]


def tag_scores(y: np.ndarray, known: np.ndarray, predicted: np.ndarray, labels: list[str], single: bool) -> dict:
    """Macro-F1 over a set's tags on the cells a person labelled (``mlops.calibration``'s definitions)."""
    if single:
        truth, guess = y.argmax(axis=1).tolist(), predicted.argmax(axis=1).tolist()
        report = cal.classification_report(np.array(truth), np.array(guess), labels)
        per = {s: round(v["f1"], 4) for s, v in report["per_class"].items() if v["support"]}
        return {"macro_f1": round(report["macro_f1"], 4), "f1_per_tag": per, "n": len(truth)}
    result = cal.multilabel_macro_f1(y, predicted, known)
    per = {s: round(f, 4) for s, f in zip(labels, result["f1_per_tag"], strict=True) if f is not None}
    return {"macro_f1": round(result["macro_f1"] or 0.0, 4), "f1_per_tag": per, "n": int(known.sum())}


@dataclass(frozen=True)
class ServingSide:
    """The serving tag scorer's side of a comparison: which tags it sets on the held-out tickets, and by what rule."""

    name: str  # the champion's version, or "zero-shot (<scorer>)"
    scorer: str
    predicted: np.ndarray  # (held-out, k) bool, columns in ``TagExamples.labels`` order
    rule: str
    thresholds: dict[str, float] | None = None  # per tag, when fitted here


def fit_f1_thresholds(probs: np.ndarray, y: np.ndarray, known: np.ndarray, labels: list[str]) -> dict[str, float]:
    """Per tag, the probability at which setting it gives the best F1 on the cells a person labelled
    (``mlops.calibration.best_threshold``, mode f1); 0.5 for a tag no threshold helps (no labelled positive)."""
    probs = np.nan_to_num(np.asarray(probs, dtype=np.float64), nan=-1.0)
    out: dict[str, float] = {}
    for j, slug in enumerate(labels):
        rows = known[:, j]
        truth = y[rows, j].astype(bool)
        found = cal.best_threshold(probs[rows, j], truth, int(truth.sum()), 0.0, "f1")
        out[slug] = found[0] if found else 0.5
    return out


def serving_side(spec: TagSetSpec, data: TagExamples, train: np.ndarray, holdout: np.ndarray) -> ServingSide:
    """What the set's serving scorer (its champion, else the zero-shot tag scorer) sets on the held-out tickets,
    decided by a rule as fair to it as the challenger's is to the challenger.

    Why not the tags' saved thresholds: they are a display choice, not the model's. The demo ships most
    zero-shot tags at 1.0 (no threshold on the dev split reached precision 0.9), which reads as "never set":
    every such tag would score F1 0 and any challenger would win against a threshold nobody chose for the
    comparison. So: a single-label set reads each side's best tag (no threshold); in a multi-label set a
    trained head (the challenger, a trained champion) decides at its own 0.5 (its head was fitted, class-
    balanced, on its training side), and the zero-shot scorer at per-tag thresholds fitted for F1 on the
    comparison's own training side (tickets it never saw; the held-out labels are never read to fit them).
    """
    index = {t.slug: j for j, t in enumerate(spec.tags)}
    order = [index[slug] for slug in data.labels]
    held = [data.texts[i] for i in np.flatnonzero(holdout)]
    single = spec.single_label
    served = champion_tag_scores(held, spec)
    if served is not None:
        scores, champion = served
        rule = "the best tag" if single else "the trained head's own decision (probability ≥ 0.5)"
        predicted = predicted_sets(scores.probabilities[:, order], single)
        return ServingSide(champion.version, scores.scorer, predicted, rule)
    if single:
        scores = score_tag_set(held, spec, zero_shot_scorer())
        predicted = predicted_sets(scores.probabilities[:, order], True)
        return ServingSide(f"zero-shot ({scores.scorer})", scores.scorer, predicted, "the best tag")
    fitted_on = [data.texts[i] for i in np.flatnonzero(train)]
    scores = score_tag_set(fitted_on + held, spec, zero_shot_scorer())  # one call: the model runs once
    probs = scores.probabilities[:, order]
    thresholds = fit_f1_thresholds(probs[: len(fitted_on)], data.y[train], data.known[train], data.labels)
    predicted = predicted_sets(probs[len(fitted_on) :], False, [thresholds[s] for s in data.labels])
    rule = f"per-tag thresholds fitted for F1 on the {len(fitted_on)} training tickets"
    return ServingSide(f"zero-shot ({scores.scorer})", scores.scorer, predicted, rule, thresholds)


def run_tag_training(version_id: int) -> ModelVersion:
    """Train, evaluate and promote or reject tag version ``version_id``; its run must be running."""
    from mlops.inference.encoders import resolve_model_ref
    from mlops.inference.setfit_tags import TagSetFitModel, save_tag_model, train_tag_setfit

    version = ModelVersion.objects.select_related("training_run").get(pk=version_id)
    rec = RunRecorder(version.training_run)
    started = time.monotonic()
    tag_set = TagSet.objects.filter(slug=version.config.get("tag_set", ""), active=True).first()
    if tag_set is None:
        raise TrainingError(f"tag set {version.config.get('tag_set')!r} is gone or inactive")
    single = tag_set.single_label

    rec.stage("collecting labels")
    data = collect_tag_examples(tag_set, until=version.created_at)
    need = int(version.config.get("min_labels_per_tag", settings.TRIAGE_TAG_MIN_LABELS_PER_TAG))
    fraction = float(version.config.get("holdout_fraction", settings.TRIAGE_RETRAIN_HOLDOUT))
    margin = float(version.config.get("promotion_margin", settings.TRIAGE_PROMOTION_MARGIN))
    counts = data.positives()
    ModelVersion.objects.filter(pk=version.pk).update(label_counts=counts)
    short = too_few_labels(counts, need)  # labels may have been removed since the run was queued
    if short:
        raise TrainingError(short)
    holdout = np.array([held_out(t, fraction) for t in data.ticket_ids], dtype=bool)
    train = ~holdout
    lacking = [s for j, s in enumerate(data.labels) if data.y[train, j].sum() < 2 or data.y[train, j].all()]
    if lacking or not holdout.any():
        raise TrainingError(
            f"the split leaves too little: tags without two positive and one negative training tickets: "
            f"{', '.join(lacking) or 'none'}; held-out tickets: {int(holdout.sum())}"
        )
    rec.log(
        "%d labelled tickets: %d train, %d held out; labels saying a tag fits: %s",
        len(holdout),
        int(train.sum()),
        int(holdout.sum()),
        counts,
    )

    rec.stage("training")
    seed = int(hashlib.sha256(repr((data.ticket_ids, data.y.tolist())).encode()).hexdigest()[:8], 16) % (2**31)
    train_started = time.monotonic()
    model = train_tag_setfit(
        [data.texts[i] for i in np.flatnonzero(train)],
        data.y[train].astype(int),
        labels=data.labels,
        multi_label=not single,
        base_model=resolve_model_ref(version.config.get("base_model") or settings.TRIAGE_EMBEDDER_MODEL),
        steps=int(version.config.get("steps", settings.TRIAGE_TAG_SETFIT_STEPS)),
        seed=seed,
        device=_training_device(),
        progress=rec.progress,
    )
    training_seconds = time.monotonic() - train_started

    rec.stage("saving")
    target = save_tag_model(
        model,
        Path(settings.TRIAGE_ARTIFACTS_DIR) / "setfit-tags" / f"{version.version}-{tag_set.slug}",
        labels=data.labels,
        multi_label=not single,
        meta={"version": version.version, "tag_set": tag_set.slug, "train_ticket_ids": data.ticket_ids},
    )
    del model

    rec.stage("evaluating")
    texts = [data.texts[i] for i in np.flatnonzero(holdout)]
    y, known = data.y[holdout], data.known[holdout]
    challenger = TagSetFitModel(target, version=version.version)
    new = tag_scores(y, known, predicted_sets(challenger.probabilities(texts), single), data.labels, single)
    spec = TagSetSpec.from_row(TagSet.objects.scorable().get(pk=tag_set.pk))
    serving = serving_side(spec, data, train, holdout)
    old = tag_scores(y, known, serving.predicted, data.labels, single)
    rec.log("serving scorer's decision: %s", serving.rule)
    rec.log(
        "macro-F1 over tags on %d held-out tickets: challenger %.3f, serving %s %.3f",
        len(texts),
        new["macro_f1"],
        serving.name,
        old["macro_f1"],
    )

    promote, verdict = promotion_verdict(new["macro_f1"], old["macro_f1"], margin)
    reason = verdict["reason"]
    metrics = {
        **verdict,
        "tag_set": tag_set.slug,
        "kind": tag_set.kind,
        "challenger": {**new, "scorer": "setfit"},
        "champion": {
            **old,
            "version": serving.name,
            "scorer": serving.scorer,
            "decision_rule": serving.rule,
            **({"thresholds": serving.thresholds} if serving.thresholds else {}),
        },
        "split": {"train": int(train.sum()), "holdout": int(holdout.sum())},
    }
    record_decision(
        version,
        promote=promote,
        reason=reason,
        fields={"artifact_path": str(target), "metrics": metrics, "training_seconds": round(training_seconds, 2)},
    )
    rec.log("%s: %s (%.0f s in all)", "promoted" if promote else "rejected", reason, time.monotonic() - started)
    version.refresh_from_db()
    return version

"""Scoring tickets against the tag sets: probabilities per tag, calibrated, and whether each tag is set.

``score_tags(tickets)`` scores a micro-batch of tickets against every active tag set and stores one
``TagPrediction`` per (ticket, tag); a second call with the same scorer and calibration stores nothing
new. The numbers come from ``score_tag_set(texts, spec, scorer)``, which needs no database:

* a **language** set: the language detector (``mlops.inference.language``), its probabilities as they
  are (``calibration="native"``);
* a **zero-shot** set with the **NLI** scorer: the zero-shot pipeline's scores (single-label: softmax
  of entailment over the set's tags; multi-label: per tag, entailment against contradiction), native,
  or a tag's ``nli`` logistic calibration when one was fitted;
* a zero-shot set with a **trained champion** (a SetFit head fitted on agents' tag labels by the
  retraining job, ``champion_tag_scores``): its probabilities as they are (``calibration="native"``);
* a zero-shot set with an **offline** scorer (embedding, cross-encoder, ensemble): a raw cosine or
  relevance score is no probability, so each tag's score goes through its one-vs-rest logistic
  calibration (``mlops.calibration.fit_logistic_calibration``): fitted on agents' labels, else on the
  evaluation set's dev split shipped with the app, else the pooled dev calibration of its set's kind
  (``POOLED_CALIBRATIONS``). A tag with none of these is not scored at all.

What calibration reads (``features``): in a multi-label set a tag's own score; in a single-label set
its log-softmax over the set's tags, since there only the comparison with the other tags says anything.
A single-label set's calibrated probabilities are normalised to sum to 1; its tag is set when it is
the set's best and at or above its threshold; a multi-label tag when it is at or above its threshold.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

POOLED_CALIBRATIONS = Path(__file__).resolve().parent / "demo_data" / "pooled_calibrations.json"
DEMO_TAG_SETS = Path(__file__).resolve().parent / "demo_data" / "tag_sets.json"
OFFLINE = ("embedding", "cross-encoder", "ensemble")


@dataclass(frozen=True)
class TagSpec:
    slug: str
    name: str
    description: str = ""
    hypothesis: str = ""
    threshold: float = 0.5
    calibration: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    id: int | None = None


@dataclass(frozen=True)
class TagSetSpec:
    """A tag set as the scorers see it (plain values: ``evaluate_tags`` builds one without a ticket)."""

    slug: str
    kind: str
    method: str
    tags: tuple[TagSpec, ...]

    @property
    def single_label(self) -> bool:
        return self.kind == "single"

    @classmethod
    def from_row(cls, tag_set: Any) -> TagSetSpec:
        """From a ``tags.TagSet`` whose current tags are prefetched (``TagSet.objects.scorable()``)."""
        tags = tuple(
            TagSpec(t.slug, t.name, t.description, t.hypothesis, t.threshold, dict(t.calibration or {}), t.pk)
            for t in tag_set.tags.all()
            if t.archived_at is None
        )
        return cls(tag_set.slug, tag_set.kind, tag_set.method, tags)

    @classmethod
    def from_seed(cls, raw: dict[str, Any], *, shipped: bool = True) -> TagSetSpec:
        """From a tag set as ``tags/demo_data/tag_sets.json`` writes it (evaluation scripts, no database);
        tags in slug order as ``TagSet.objects.scorable()`` gives them. ``shipped=False`` leaves out the
        thresholds and calibrations shipped with them (defaults: 0.5, none)."""
        tags = tuple(
            TagSpec(t["slug"], t["name"], t.get("description", ""), t.get("hypothesis", ""))
            if not shipped
            else TagSpec(
                t["slug"],
                t["name"],
                t.get("description", ""),
                t.get("hypothesis", ""),
                t.get("threshold", 0.5),
                t.get("calibration", {}),
            )
            for t in sorted(raw["tags"], key=lambda t: t["slug"])
        )
        return cls(raw["slug"], raw["kind"], raw["method"], tags)

    @classmethod
    def demo(cls, slug: str, *, shipped: bool = True) -> TagSetSpec:
        """The demo's tag set ``slug`` from ``DEMO_TAG_SETS`` (``from_seed``); for the evaluation scripts."""
        for raw in json.loads(DEMO_TAG_SETS.read_text()):
            if raw["slug"] == slug:
                return cls.from_seed(raw, shipped=shipped)
        raise KeyError(f"no tag set {slug!r} in {DEMO_TAG_SETS}")


@dataclass
class SetScores:
    """One tag set's scores for ``n`` texts and ``k`` tags; ``probabilities`` is NaN for an unscored tag."""

    native: np.ndarray  # uncalibrated probabilities as the scorer reads them (for "ECE before")
    features: np.ndarray  # what a logistic calibration reads
    probabilities: np.ndarray  # calibrated
    calibration: list[str]  # per tag: native, labels, dev, pooled-dev or none
    scorer: str
    scorer_version: str

    def is_set(self, thresholds: Sequence[float], single_label: bool) -> np.ndarray:
        probs = np.nan_to_num(self.probabilities, nan=-1.0)
        above = probs >= np.asarray(thresholds, dtype=np.float64)[None, :]
        if not single_label or probs.shape[1] == 0:
            return above
        best = np.zeros_like(above)
        best[np.arange(len(probs)), probs.argmax(axis=1)] = True
        return above & best


def tag_classes(spec: TagSetSpec):
    from mlops.inference.scorers import ClassSpec

    return [ClassSpec(t.slug, t.name, t.description, t.hypothesis) for t in spec.tags]


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    top = x.max(axis=1, keepdims=True)
    return x - top - np.log(np.exp(x - top).sum(axis=1, keepdims=True))


def native_and_features(texts: list[str], spec: TagSetSpec, scorer: Any) -> tuple[np.ndarray, np.ndarray]:
    """The scorer's uncalibrated probabilities and the calibration features, ``(n, k)`` each."""
    from mlops.calibration import softmax

    classes = tag_classes(spec)
    if scorer.name == "nli":
        logits = scorer.nli_logits(texts, classes)
        entail = logits[..., scorer.entailment_id]
        if spec.single_label:
            return softmax(entail), log_softmax(entail)
        # Entailment against contradiction, as the pipeline's multi_label=True: its log-odds are the feature.
        margin = entail - logits[..., scorer.contradiction_id]
        return 1.0 / (1.0 + np.exp(-margin)), margin
    raw = scorer.logits(texts, classes)
    if spec.single_label:
        return softmax(raw), log_softmax(raw)
    # What a naive display would call a probability: the cosine (or relevance) itself, clipped.
    cosine = raw / getattr(scorer, "scale", 1.0)
    return np.clip(cosine, 0.0, 1.0), raw


def pooled_calibration(scorer: str, kind: str) -> dict[str, Any] | None:
    try:
        pooled = json.loads(POOLED_CALIBRATIONS.read_text())
    except (OSError, ValueError):
        return None
    return pooled.get(scorer, {}).get(kind)


def calibration_for(tag: TagSpec, scorer: str, kind: str) -> tuple[dict[str, Any] | None, str]:
    """The calibration a tag's scores go through for ``scorer``, and its source (labels, dev, pooled-dev)."""
    own = tag.calibration.get(scorer)
    if own:
        return own, str(own.get("source", "labels"))
    if scorer in OFFLINE:
        pooled = pooled_calibration(scorer, kind)
        if pooled:
            return pooled, "pooled-dev"
    return None, "native" if scorer == "nli" else "none"


def score_tag_set(texts: Sequence[str], spec: TagSetSpec, scorer: Any = None) -> SetScores:
    """Scores of ``texts`` against one tag set (module docstring); ``scorer`` is unused for a language set."""
    from mlops.calibration import apply_logistic_calibration

    texts = list(texts)
    if spec.method == "language":
        return _language_scores(texts, spec)
    native, features = native_and_features(texts, spec, scorer)
    probs = np.full_like(native, np.nan)
    sources = []
    for j, tag in enumerate(spec.tags):
        calibration, source = calibration_for(tag, scorer.name, spec.kind)
        sources.append(source)
        if calibration is not None:
            probs[:, j] = apply_logistic_calibration(features[:, j], calibration)
        elif source == "native":
            probs[:, j] = native[:, j]
        else:
            logger.warning("tag %s/%s has no calibration for %s: not scored", spec.slug, tag.slug, scorer.name)
    if spec.single_label and not np.isnan(probs).all():
        probs = probs / np.nansum(probs, axis=1, keepdims=True)
    fingerprint = [(t.slug, t.calibration.get(scorer.name), s) for t, s in zip(spec.tags, sources, strict=True)]
    version = f"{scorer.name}:{scorer.version}|{_digest([spec.kind, fingerprint, [c.name for c in tag_classes(spec)]])}"
    return SetScores(native, features, probs, sources, scorer.name, version)


def language_detector(spec: TagSetSpec):
    """The detector of a language set: its tags' languages and ``TRIAGE_TAG_OTHER_LANGUAGES``, built once
    per process with its models loaded."""
    from django.conf import settings

    from mlops.inference.language import get_language_detector

    return get_language_detector([t.slug for t in spec.tags], settings.TRIAGE_TAG_OTHER_LANGUAGES)


def warm_tag_scorers() -> None:
    """Worker start (``mlops.inference.warm.WARMERS``): build the active language sets' detectors and load
    each zero-shot set's trained champion, so that the first routed batch after a restart loads neither
    (as ``mlops.registry.warm_trained_champion`` does for routing's). The zero-shot tag scorer is the
    routing scorers' models, warmed by routing."""
    from .models import TagSet

    try:
        specs = [TagSetSpec.from_row(s) for s in TagSet.objects.scorable()]
    except Exception:  # the database may be migrating while a worker starts; the first batch loads them
        logger.exception("could not read the tag sets while warming their scorers")
        return
    for spec in specs:
        if not spec.tags:
            continue
        if spec.method == "language":
            language_detector(spec)
        else:
            _champion_model(spec)


def _language_scores(texts: list[str], spec: TagSetSpec) -> SetScores:
    detector = language_detector(spec)
    probs = detector.probabilities(texts)[:, : len(spec.tags)]  # the last column is "another language"
    return SetScores(probs, probs, probs, ["native"] * len(spec.tags), "language", detector.version)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


def zero_shot_scorer():
    """The scorer for zero-shot tag sets: ``TRIAGE_TAG_SCORER`` (auto: NLI, else the best offline one)."""
    from django.conf import settings

    from mlops.inference.registry import resolve_scorer

    choice = resolve_scorer(settings.TRIAGE_TAG_SCORER)
    if choice.degraded:
        logger.info("tags: %s", choice.message)
    return choice.scorer


def _champion_model(spec: TagSetSpec) -> tuple[Any, Any] | None:
    """A zero-shot set's trained champion, loaded once per process: ``(TagSetFitModel, ModelVersion)``; None
    when the set has none or its files cannot load (logged)."""
    from mlops.inference.encoders import ModelUnavailable
    from mlops.models import ModelVersion, tag_task

    if spec.method != "zero_shot":
        return None
    champion = ModelVersion.objects.champion(task=tag_task(spec.slug))
    if champion is None:
        return None
    from mlops.inference.setfit_tags import get_tag_model

    try:
        return get_tag_model(champion.artifact_path, champion.version), champion
    except (ModelUnavailable, OSError) as exc:
        logger.warning("tag set %s: champion %s cannot load (%s); scoring zero-shot", spec.slug, champion, exc)
        return None


def champion_tag_scores(texts: Sequence[str], spec: TagSetSpec) -> tuple[SetScores, Any] | None:
    """The scores of a tag set's trained champion (``learning.tag_retraining``) and that ``ModelVersion``;
    None when the set has none, or its model cannot load or does not know every current tag of the set
    (a tag added since training): the zero-shot scorer then scores the set."""
    loaded = _champion_model(spec)
    if loaded is None:
        return None
    model, champion = loaded
    missing = [t.slug for t in spec.tags if t.slug not in model.labels]
    if missing:
        logger.info("tag set %s: %s was not trained on %s; scoring zero-shot", spec.slug, champion, missing)
        return None
    columns = [model.labels.index(t.slug) for t in spec.tags]
    probs = model.probabilities(list(texts))[:, columns]
    if spec.single_label and len(columns) < len(model.labels):  # a tag archived since training
        probs = probs / probs.sum(axis=1, keepdims=True)
    version = f"setfit-tags:{champion.version}|{_digest([spec.kind, [t.slug for t in spec.tags]])}"
    return SetScores(probs, probs, probs, ["native"] * len(spec.tags), "setfit", version), champion


def score_tags(tickets: Iterable[Any], *, scorer: Any = None) -> dict[int, list[Any]]:
    """Score and store every active tag set's tags for ``tickets``; ticket id → its ``TagPrediction`` rows.

    One call per micro-batch: each tag set is scored for all tickets at once. A redelivered batch
    stores nothing twice (one row per ticket, tag and scorer version).
    """
    from .models import TagPrediction, TagSet

    tickets = [t for t in tickets]
    if not tickets:
        return {}
    texts = [t.text for t in tickets]
    specs = [TagSetSpec.from_row(s) for s in TagSet.objects.scorable()]
    rows: list[TagPrediction] = []
    for spec in specs:
        if not spec.tags:
            continue
        trained = champion_tag_scores(texts, spec)
        model_version = trained[1] if trained else None
        if trained is not None:
            scores = trained[0]
        else:
            if spec.method != "language" and scorer is None:
                scorer = zero_shot_scorer()
            scores = score_tag_set(texts, spec, scorer)
        thresholds = [t.threshold for t in spec.tags]
        chosen = scores.is_set(thresholds, spec.single_label)
        for i, ticket in enumerate(tickets):
            for j, tag in enumerate(spec.tags):
                p = scores.probabilities[i, j]
                if np.isnan(p):
                    continue
                rows.append(
                    TagPrediction(
                        ticket_id=ticket.pk,
                        tag_id=tag.id,
                        probability=float(np.clip(p, 0.0, 1.0)),
                        raw_score=float(scores.features[i, j]),
                        threshold=tag.threshold,
                        is_set=bool(chosen[i, j]),
                        scorer=scores.scorer,
                        scorer_version=scores.scorer_version[:300],
                        calibration=scores.calibration[j],
                        model_version=model_version,
                    )
                )
    TagPrediction.objects.bulk_create(rows, ignore_conflicts=True)
    out: dict[int, list[TagPrediction]] = {t.pk: [] for t in tickets}
    for prediction in TagPrediction.objects.filter(
        ticket_id__in=out, scorer_version__in={r.scorer_version for r in rows}
    ).select_related("tag"):
        out[prediction.ticket_id].append(prediction)
    return out

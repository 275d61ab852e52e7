"""The checks a person runs when suggestion or routing scores look wrong (``manage.py diagnose_models``,
the page ``/models/diagnostics/``). Each is a pass/warn line with its numbers:

* **window** — the share of tickets and passages longer than each serving model's input window (the
  bi-encoder reads 256 tokens of a ticket, the cross-encoder 512 of a ticket and passage together,
  a SetFit or NLI router its own): what is cut is never read.
* **sanity pairs** — a ticket against the article an agent marked helpful for it and against an
  unrelated one (from the demo help centre before the first mark): the serving embedder and reranker
  should score the helpful one higher nearly every time.
* **pair order** — the cross-encoder read (ticket, passage) as retrieval gives it and the other way
  round: a model trained on (query, passage) separates the sanity pairs at least as well in that order.
* **reduced precision** — the reranker's serving path (a float32 ONNX graph, bfloat16, or the int8
  graph) against the float32 reference of the same weights on the same pairs: rank agreement per
  ticket (Kendall τ, same best passage) and the largest difference of a logit.

Loads models: run it in a command or on an inference worker (``diagnose_models_task``), never in a web
process. The last run is kept as JSON under ``TRIAGE_ARTIFACTS_DIR`` for the page.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from .diagnostics_samples import SanityPair, sample_passages, sample_tickets, sanity_pairs

DEFAULT_TICKETS = 200
DEFAULT_PASSAGES = 500
DEFAULT_PAIRS = 20
# Tickets longer than the bi-encoder's window lose their end; a few long e-mails are normal, a fifth
# of all tickets means the model reads a different ticket than the agent does.
TICKETS_CUT_WARN = 0.10
# Passages are split to fit the embedder's window (search.chunking): any cut one was split for another.
PASSAGES_CUT_WARN = 0.0
PAIRS_CUT_WARN = 0.05
# Share of sanity pairs the helpful article must win (ticket vs article, MaxP over its passages).
SANITY_MIN = 0.90
# The reranker reads the dense head of each article (retrieval reranks the fused head): its best 3.
PASSAGES_PER_ARTICLE = 3
# A reduced-precision path agrees when it picks the reference's best passage for nearly every ticket
# and orders the rest alike (bfloat16 measured τ 0.98 and the same top 5 on 20 of 20 demo tickets; the
# int8 graph τ 0.89).
AGREEMENT_MIN_TOP1 = 0.95
AGREEMENT_MIN_TAU = 0.90

PASS, WARN, SKIP = "pass", "warn", "skip"


@dataclass(frozen=True)
class Check:
    name: str
    model: str
    status: str
    line: str
    numbers: dict[str, Any] = field(default_factory=dict)


@dataclass
class Report:
    checks: list[Check]
    samples: dict[str, str]
    options: dict[str, int]
    started_at: str
    seconds: float

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if c.status == WARN]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Report:
        return cls(
            checks=[Check(**c) for c in data["checks"]],
            samples=dict(data["samples"]),
            options=dict(data["options"]),
            started_at=str(data["started_at"]),
            seconds=float(data["seconds"]),
        )


def report_path() -> Path:
    return Path(settings.TRIAGE_ARTIFACTS_DIR) / "diagnostics" / "models.json"


def save_report(report: Report) -> Path:
    """Write the report where the page reads it; atomically, so a reader never sees half a file."""
    path = report_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".models-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(report.to_json(), handle, indent=1)
    os.replace(tmp, path)
    return path


def load_report() -> Report | None:
    """The last saved run, or ``None`` when there is none (or it cannot be read)."""
    try:
        return Report.from_json(json.loads(report_path().read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_diagnostics(
    *,
    tickets: int = DEFAULT_TICKETS,
    passages: int = DEFAULT_PASSAGES,
    pairs: int = DEFAULT_PAIRS,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Run every check on the serving models.

    >>> report = run_diagnostics(tickets=50, pairs=10)                 # doctest: +SKIP
    >>> [(c.name, c.status) for c in report.checks][:2]               # doctest: +SKIP
    [('window: tickets', 'pass'), ('window: passages', 'pass')]
    """
    from mlops.inference.encoders import get_cross_encoder, get_embedder

    for name, value in (("tickets", tickets), ("passages", passages), ("pairs", pairs)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    say = progress or (lambda _message: None)
    started, clock = datetime.now(UTC), time.monotonic()
    embedder, cross_encoder = get_embedder(), get_cross_encoder()
    say("sampling")
    ticket_sample = sample_tickets(tickets)
    passage_sample = sample_passages(passages, embedder)
    sanity, sanity_source = sanity_pairs(pairs, embedder)
    checks = window_checks(embedder, cross_encoder, ticket_sample.texts, passage_sample.texts)
    checks += routing_window_check(ticket_sample.texts)
    say("sanity pairs")
    checks += pair_checks(embedder, cross_encoder, sanity, say)
    return Report(
        checks=checks,
        samples={
            "tickets": f"{len(ticket_sample.texts)} {ticket_sample.source}",
            "passages": f"{len(passage_sample.texts)} {passage_sample.source}",
            "sanity pairs": f"{len(sanity)} from {sanity_source}",
        },
        options={"tickets": tickets, "passages": passages, "pairs": pairs},
        started_at=started.isoformat(timespec="seconds"),
        seconds=round(time.monotonic() - clock, 2),
    )


def _cut_check(name: str, model: str, counts: np.ndarray, window: int, what: str, warn_above: float) -> Check:
    n = len(counts)
    if n == 0:
        return Check(name, model, SKIP, f"no {what} to measure")
    cut = int((counts > window).sum())
    share = cut / n
    numbers = {
        "window": window,
        "n": n,
        "cut": cut,
        "share": round(share, 4),
        "median_tokens": int(np.median(counts)),
        "max_tokens": int(counts.max()),
    }
    line = (
        f"{cut} of {n} {what} ({share:.1%}) longer than the {window}-token window "
        f"(median {numbers['median_tokens']}, longest {numbers['max_tokens']} tokens)"
    )
    return Check(name, model, WARN if share > warn_above else PASS, line, numbers)


def window_checks(embedder, cross_encoder, tickets: list[str], passages: list[str]) -> list[Check]:
    """The share of tickets and passages each search model cuts off at its window."""
    from mlops.inference.probes import cross_encoder_window, embedder_window, pair_token_counts, text_token_counts

    window = embedder_window(embedder)
    checks = [
        _cut_check(
            "window: tickets",
            embedder.version,
            text_token_counts(embedder, tickets),
            window,
            "tickets",
            TICKETS_CUT_WARN,
        ),
        _cut_check(
            "window: passages",
            embedder.version,
            text_token_counts(embedder, passages),
            window,
            "passages",
            PASSAGES_CUT_WARN,
        ),
    ]
    # Each ticket beside a passage of the sample, as the reranker reads them (ticket first).
    pairs = [(t, passages[(i * 7919) % len(passages)]) for i, t in enumerate(tickets)] if passages else []
    checks.append(
        _cut_check(
            "window: ticket + passage",
            cross_encoder.version,
            pair_token_counts(cross_encoder, pairs),
            cross_encoder_window(cross_encoder),
            "ticket + passage pairs",
            PAIRS_CUT_WARN,
        )
    )
    return checks


def routing_window_check(tickets: list[str]) -> list[Check]:
    """The routing model's own window when it reads tickets through its own tokenizer (SetFit, NLI)."""
    from mlops.inference.encoders import ModelUnavailable
    from mlops.inference.probes import scorer_window
    from mlops.inference.registry import resolve_scorer
    from mlops.inference.registry import scorer_for_version as load_version
    from mlops.models import ModelVersion
    from mlops.registry import ZERO_SHOT_SCORERS

    champion = ModelVersion.objects.champion()
    try:
        if champion is not None and champion.scorer not in ZERO_SHOT_SCORERS:
            scorer, model = load_version(champion), str(champion)
        else:
            scorer = resolve_scorer().scorer
            model = scorer.name
    except ModelUnavailable as exc:
        return [Check("window: routing", "", SKIP, f"no routing model loads ({exc})")]
    probe = scorer_window(scorer)
    if probe is None:
        return [
            Check(
                "window: routing",
                model,
                SKIP,
                f"routing serves {scorer.name}: it reads tickets with the bi-encoder or cross-encoder checked above",
            )
        ]
    window, count = probe
    # What the router reads of a ticket (its ask, for the scorers that read one), not the raw text.
    read = scorer.read(tickets) if hasattr(scorer, "read") else tickets
    return [_cut_check("window: routing", model, count(read), window, "tickets", TICKETS_CUT_WARN)]


def _maxp(scores: np.ndarray, owners: list[int], n: int) -> np.ndarray:
    best = np.full(n, -np.inf)
    np.maximum.at(best, np.asarray(owners), scores)
    return best


def _sanity_check(name: str, model: str, helpful: np.ndarray, unrelated: np.ndarray, unit: str) -> Check:
    wins = helpful > unrelated
    share = float(wins.mean())
    margin = float(np.median(helpful - unrelated))
    numbers = {
        "n": len(wins),
        "helpful_higher": int(wins.sum()),
        "share": round(share, 4),
        "median_margin": round(margin, 4),
    }
    line = (
        f"helpful article above the unrelated one for {int(wins.sum())} of {len(wins)} tickets ({share:.0%}); "
        f"median margin {margin:+.3f} {unit}"
    )
    return Check(name, model, PASS if share >= SANITY_MIN else WARN, line, numbers)


def pair_checks(embedder, cross_encoder, sanity: list[SanityPair], say: Callable[[str], None]) -> list[Check]:
    """Sanity pairs for the embedder and the reranker, the reranker's pair order, its precision."""
    from mlops.inference.probes import float_reference

    if not sanity:
        line = "no sanity pairs: no helpful mark on an indexed article and no demo help centre"
        return [Check(n, "", SKIP, line) for n in ("sanity: embedder", "sanity: reranker", "pair order", "precision")]
    n = len(sanity)
    queries = embedder.encode([p.ticket for p in sanity])
    helpful_cos, unrelated_cos = np.empty(n), np.empty(n)
    # The reranker's pairs: each article's passages nearest the ticket, owner = 2*i (helpful) / 2*i+1.
    head: list[tuple[str, str]] = []
    owners: list[int] = []
    for i, pair in enumerate(sanity):
        for side, texts in enumerate((pair.helpful_passages, pair.unrelated_passages)):
            cosines = embedder.encode(list(texts)) @ queries[i]
            (helpful_cos if side == 0 else unrelated_cos)[i] = cosines.max()
            for j in np.argsort(-cosines)[:PASSAGES_PER_ARTICLE]:
                head.append((pair.ticket, texts[j]))
                owners.append(2 * i + side)
    checks = [_sanity_check("sanity: embedder", embedder.version, helpful_cos, unrelated_cos, "cosine")]
    say("reranker")
    served = cross_encoder.predict(head)
    best = _maxp(served, owners, 2 * n)
    checks.append(_sanity_check("sanity: reranker", cross_encoder.version, best[0::2], best[1::2], "logit"))
    say("pair order")
    reversed_scores = cross_encoder.predict([(p, q) for q, p in head])
    checks.append(_order_check(cross_encoder.version, served, reversed_scores, owners, n))
    say("float reference")
    reference = float_reference(cross_encoder)
    if reference is None:
        checks.append(
            Check(
                "precision",
                cross_encoder.version,
                SKIP,
                "the reranker serves float32 weights as they are: it is its own reference",
            )
        )
    else:
        model, name = reference
        checks.append(_agreement_check(cross_encoder.version, name, served, model.predict(head), owners))
    checks.append(
        Check(
            "precision: embedder",
            embedder.version,
            SKIP,
            f"the bi-encoder serves float32 on {embedder.info.backend}: it is its own reference",
        )
    )
    return checks


def _order_check(model: str, served: np.ndarray, reversed_scores: np.ndarray, owners: list[int], n: int) -> Check:
    from scipy.stats import kendalltau

    best_served = _maxp(served, owners, 2 * n)
    best_reversed = _maxp(reversed_scores, owners, 2 * n)
    acc_served = float((best_served[0::2] > best_served[1::2]).mean())
    acc_reversed = float((best_reversed[0::2] > best_reversed[1::2]).mean())
    tau = float(kendalltau(served, reversed_scores).statistic)
    diff = float(np.abs(served - reversed_scores).mean())
    numbers = {
        "pairs": len(served),
        "mean_abs_diff": round(diff, 4),
        "kendall_tau": round(tau, 4),
        "sanity_ticket_first": round(acc_served, 4),
        "sanity_passage_first": round(acc_reversed, 4),
    }
    line = (
        f"(ticket, passage) vs (passage, ticket) on {len(served)} pairs: mean |Δ logit| {diff:.3f}, "
        f"τ {tau:.3f}; sanity pairs right {acc_served:.0%} ticket first (as served) vs {acc_reversed:.0%} "
        "passage first"
    )
    return Check("pair order", model, PASS if acc_served >= acc_reversed else WARN, line, numbers)


def _agreement_check(
    model: str, reference_name: str, served: np.ndarray, reference: np.ndarray, owners: list[int]
) -> Check:
    from scipy.stats import kendalltau

    tickets = np.asarray(owners) // 2
    taus, same_best = [], []
    for t in np.unique(tickets):
        rows = tickets == t
        same_best.append(int(np.argmax(served[rows]) == np.argmax(reference[rows])))
        if rows.sum() > 1:
            tau = kendalltau(served[rows], reference[rows]).statistic
            taus.append(1.0 if np.isnan(tau) else float(tau))
    mean_tau = float(np.mean(taus)) if taus else 1.0
    top1 = float(np.mean(same_best))
    diff = float(np.abs(served - reference).max())
    numbers = {
        "reference": reference_name,
        "pairs": len(served),
        "tickets": len(same_best),
        "mean_kendall_tau": round(mean_tau, 4),
        "same_best_passage": round(top1, 4),
        "max_abs_diff": round(diff, 4),
    }
    line = (
        f"serving path vs {reference_name} on {len(served)} pairs: same best passage for {top1:.0%} of "
        f"{len(same_best)} tickets, mean τ {mean_tau:.3f}, max |Δ logit| {diff:.3f}"
    )
    ok = top1 >= AGREEMENT_MIN_TOP1 and mean_tau >= AGREEMENT_MIN_TAU
    return Check("precision", model, PASS if ok else WARN, line, numbers)

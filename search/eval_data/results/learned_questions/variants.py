"""Feedback-stage variants over the prepared DEV sets: MRR@10 of the feedback stage and of ``final`` with marks.

The stage is recomputed from the cached vectors by exact search (the product reads the nearest 50 questions
from HNSW: the baseline and the landed prototype reproduce ``evaluate_search`` to the fourth decimal), then
``guarded_fit`` on the marked tickets (each scored without its own marks) and ``evaluate`` — the command's
own functions. Demo dev and subject-dev are the marked tickets themselves: each is scored without its own
marks. Features first (reranker off, as served here), e.g. for Parcelwise:

    SEARCH_RERANK=off python manage.py evaluate_search --kb eval_data/parcelwise/articles.jsonl \
      --queries eval_data/parcelwise/search_dev_queries.tsv --qrels eval_data/parcelwise/search_dev_qrels.tsv \
      --feedback eval_data/parcelwise/feedback.tsv --save-features .data/learned_questions/pw_dev.feat.json
    # subj_dev / demo_dev: demo_subject_dev_* / demo_dev_* with search/eval_data/demo_feedback.tsv
    #   (demo dev: add --allow-marks-on-queries; its queries are the marked tickets, left out below);
    # bank_dev: bank_kb.jsonl, bank_dev_*, bank_feedback.tsv
    python prepare.py pw subj demo bank
    python variants.py pw,subj,demo,bank '[{}, {"mode": "centroid_r"}]'

Exploration code, not served.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import defaultdict

import numpy as np
from prepare import prepare  # sets Django up

from search.evaluation import Features, evaluate, without_feedback
from search.fitting import LabeledSet, guarded_fit
from search.fusion import DEFAULT_WEIGHTS_FILE, load_weights_file

POLICY = load_weights_file(DEFAULT_WEIGHTS_FILE)
TOPN = 50


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / max(np.linalg.norm(v), 1e-9)


def question_rows(d, rep_kind):
    """(ticket, article, helpful, vector) rows of the learned questions under a representation."""
    rows = []
    for t, a, h in d["marks"]:
        r = d["rep"][("t", t)]
        if rep_kind == "best3":
            vs = [d["vec"][d["best3"][(t, a)]]]
        elif rep_kind == "ask":
            vs = [d["vec"][r["ask"]]]
        elif rep_kind == "raw":
            vs = [d["vec"][r["raw"]]]
        elif rep_kind == "sents":
            vs = [d["vec"][s] for s in r["sents"]] or [d["vec"][r["ask"]]]
        elif rep_kind == "sents+best3":
            vs = [d["vec"][s] for s in r["sents"]] + [d["vec"][d["best3"][(t, a)]]]
        elif rep_kind == "sents+ask":
            vs = [d["vec"][s] for s in r["sents"]] + [d["vec"][r["ask"]]]
        elif rep_kind.startswith("top"):  # topK: the K sentences nearest the article, each a vector
            k = int(rep_kind[3:])
            s = r["sents"]
            if len(s) <= k:
                vs = [d["vec"][x] for x in s] or [d["vec"][r["ask"]]]
            else:
                sv = np.stack([d["vec"][x] for x in s])
                near = (sv @ d["passages"][a].T).max(axis=1)
                vs = [sv[i] for i in np.argsort(-near, kind="stable")[:k]]
        else:
            raise ValueError(rep_kind)
        for v in vs:
            rows.append((t, a, h, unit(v)))
    return rows


def query_vectors(d, key, q_kind):
    r = d["rep"][key]
    if q_kind == "ask":
        return [d["vec"][r["ask"]]]
    if q_kind == "raw":
        return [d["vec"][r["raw"]]]
    if q_kind == "sents+ask":
        return [d["vec"][s] for s in r["sents"]] + [d["vec"][r["ask"]]]
    raise ValueError(q_kind)


def question_scores(d, key, exclude, rows, mat, q_kind, pool, topn):
    """{article: (pos score, neg score)} from the learned questions for one query."""
    keep = np.array([t != exclude for t, _, _, _ in rows])
    if not keep.any():
        return {}, {}
    qv = np.stack([unit(v) for v in query_vectors(d, key, q_kind)])
    sims_all = qv @ mat.T  # (query vecs, rows)
    sims = sims_all.max(axis=0)
    sims[~keep] = -np.inf
    # the product reads the topn nearest rows (HNSW); rows of the same question count once each
    order = np.argsort(-sims, kind="stable")[: topn if topn else len(sims)]
    pos: dict = defaultdict(list)
    neg: dict = defaultdict(list)
    per_ticket: dict = {}
    for i in order:
        if not np.isfinite(sims[i]):
            continue
        t, a, h, _ = rows[i]
        k = (t, a, h)
        per_ticket[k] = max(per_ticket.get(k, -1.0), float(sims[i]))  # MaxP over a question's vectors
    for (_, a, h), s in per_ticket.items():
        (pos if h else neg)[a].append(s)

    def agg(lst):
        if pool == "max":
            return max(lst)
        if pool == "mean2":
            return float(np.mean(sorted(lst)[-2:]))
        if pool == "softmax":
            x = np.array(lst)
            return float(np.log(np.exp(20 * x).sum()) / 20)
        raise ValueError(pool)

    return {a: agg(v) for a, v in pos.items()}, {a: max(v) for a, v in neg.items()}


def centroid_scores(d, key, exclude, rows, q_kind):
    by_article = defaultdict(list)
    for t, a, h, v in rows:
        if t != exclude and h:
            by_article[a].append(v)
    qv = np.stack([unit(v) for v in query_vectors(d, key, q_kind)])
    out = {}
    for a, vs in by_article.items():
        c = unit(np.mean(vs, axis=0))
        out[a] = float((qv @ c).max())
    return out, {}


LR_CACHE: dict = {}


def lr_scores(d, key, exclude, rows, q_kind, C, cache=LR_CACHE):
    """A per-deployment logistic classifier over the helpful questions' vectors (fitted without ``exclude``)."""
    from sklearn.linear_model import LogisticRegression

    ck = (id(rows), exclude if exclude is None else hash_fold(exclude), C)
    if ck not in cache:
        X = [v for (t, a, h, v) in rows if h and (exclude is None or hash_fold(t) != hash_fold(exclude))]
        y = [a for (t, a, h, v) in rows if h and (exclude is None or hash_fold(t) != hash_fold(exclude))]
        cache[ck] = LogisticRegression(C=C, max_iter=2000).fit(np.stack(X), y)
    clf = cache[ck]
    qv = unit(query_vectors(d, key, q_kind)[0])
    p = clf.predict_log_proba(qv[None])[0]
    return {a: float(x) for a, x in zip(clf.classes_, p, strict=True)}, {}


def hash_fold(t, folds=5):
    return int(hashlib.sha1(str(t).encode()).hexdigest(), 16) % folds


def feedback_stage(dense, pos, neg, combine, param):
    scores = {}
    arts = set(dense) | set(pos)
    for a in arts:
        dn = dense.get(a, min(dense.values()) if dense else -1.0)
        p = pos.get(a, -1.0)
        if combine == "max":
            m = max(dense.get(a, -1.0), p)
        elif combine == "maxoff":  # a question must beat the passages by `param` (questions match questions)
            m = max(dense.get(a, -1.0), p - param)
        elif combine == "add":  # dense plus a bonus from the question
            m = dn + param * max(0.0, p - dn) if a in pos else dn
        elif combine == "mix":
            m = (1 - param) * dn + param * (p if a in pos else dn)
        else:
            raise ValueError(combine)
        n = neg.get(a)
        scores[a] = m - max(0.0, n - m) if n is not None else m
    return scores


def run_variant(d, rep_kind="best3", q_kind="ask", pool="max", combine="max", param=0.0, topn=TOPN, mode="nn"):
    if mode == "lr":
        LR_CACHE.clear()
    rows = question_rows(d, rep_kind)
    mat = np.stack([r[3] for r in rows])
    feat = d["feat"]

    def stage_for(key, exclude, dense):
        if mode == "lr":
            pos, _ = lr_scores(d, key, exclude, rows, q_kind, param)
            _, neg = question_scores(d, key, exclude, rows, mat, q_kind, "max", topn)
            return {**{a: v for a, v in pos.items()}}, pos
        if mode == "cnn":  # half nearest question, half prototype
            cpos, _ = centroid_scores(d, key, exclude, rows, q_kind)
            npos, neg = question_scores(d, key, exclude, rows, mat, q_kind, "max", 0)
            pos = {a: 0.5 * cpos[a] + 0.5 * npos.get(a, cpos[a]) for a in cpos}
            return feedback_stage(dense, pos, neg, combine, param), pos
        if mode == "rocchio":
            by = defaultdict(list)
            for t, a, h, v in rows:
                if t != exclude and h:
                    by[a].append(v)
            qv = unit(query_vectors(d, key, q_kind)[0])
            pos = {}
            for a, vs in by.items():
                c = unit(np.mean(vs, axis=0)) + param * unit(np.mean(d["passages"][a], axis=0))
                pos[a] = float(qv @ unit(c))
            _, neg = question_scores(d, key, exclude, rows, mat, q_kind, "max", topn)
            return feedback_stage(dense, pos, neg, "max", 0.0), pos
        if mode == "centroid_r":  # as the product reads it: prototypes of dense's articles and the nearest questions'
            pos, _ = centroid_scores(d, key, exclude, rows, q_kind)
            npos, neg = question_scores(d, key, exclude, rows, mat, q_kind, "max", topn)
            pos = {a: v for a, v in pos.items() if a in dense or a in npos}
            return feedback_stage(dense, pos, neg, combine, param), pos
        if mode == "centroid":
            pos, neg = centroid_scores(d, key, exclude, rows, q_kind)
            # negatives as in the product (nearest not-helpful question)
            _, neg = question_scores(d, key, exclude, rows, mat, q_kind, "max", topn)
        else:
            pos, neg = question_scores(d, key, exclude, rows, mat, q_kind, pool, topn)
        return feedback_stage(dense, pos, neg, combine, param), pos

    qscores, qalone = {}, {}
    for qid in d["queries"]:
        f = feat["scores"][qid]
        st, pos = stage_for(("q", qid), d["own"].get(qid), f["dense"])
        qscores[qid] = {**f, "feedback": {str(a): v for a, v in sorted(st.items())}}
        qalone[qid] = {"dense": dict(pos)}
    mscores = {}
    for fid, f in feat["marks"]["scores"].items():
        t = int(fid.split("-")[1])
        st, _ = stage_for(("t", t), t, f["dense"])
        mscores[fid] = {**f, "feedback": {str(a): v for a, v in sorted(st.items())}}
    qrels = feat["qrels"]
    features = Features(qscores, {}, feat["words"])
    marks = LabeledSet("feedback", mscores, feat["marks"]["qrels"], feat["marks"]["words"])
    guard = guarded_fit(marks, POLICY)
    m = evaluate(features, qrels, guard.policy)
    alone = evaluate(Features(qalone, {}, feat["words"]), qrels, {"dense": 1.0})["dense"]["mrr@10"]
    nomark = evaluate(without_feedback(features), qrels, POLICY)["final"]["mrr@10"]
    return dict(
        dense=m["dense"]["mrr@10"],
        hybrid=m["hybrid"]["mrr@10"],
        feedback=m["feedback"]["mrr@10"],
        final=m["final"]["mrr@10"],
        final_nomarks=nomark,
        alone=alone,
        chosen=guard.chosen,
        gain=guard.held_out.get("fitted gain"),
        noise=guard.held_out.get("fitted noise"),
        weights=guard.policy.describe() if guard.chosen == "fitted" else "",
    )


if __name__ == "__main__":
    sets = sys.argv[1].split(",")
    variants = json.loads(sys.argv[2])
    data = {s: prepare(s) for s in sets}
    for v in variants:
        line = []
        for s in sets:
            r = run_variant(data[s], **v)
            line.append(
                f"{s}: fb {r['feedback']:.4f} final {r['final']:.4f} ({r['chosen']}; "
                f"nomarks {r['final_nomarks']:.4f}) alone {r['alone']:.3f}"
            )
        print(json.dumps(v), " | ".join(line), flush=True)

"""The ask of a ticket: its text without greetings, pleasantries, signatures and quoted replies.

Whole e-mails match each other on what they share besides the problem — "Hi team, I hope you're
well", "Thanks in advance, Anna, Office Manager, Tel ..." — so a polite e-mail looks like any other
polite e-mail to a bi-encoder, and a model with a 64-token window (SetFit's) may read nothing but
the greeting. ``clean_ask`` strips what is not the problem (rules over lines and sentences, so that
it works on text whose line breaks are gone, as in the evaluation files). Routing reads it
(``mlops.inference.scorers.BaseScorer.read``, self-training's stream, SetFit's training texts) and so
do article suggestions (``search``: learned questions are matched ask to ask); ``best_sentences``
keeps, of a long ask, the sentences nearest the article it was marked helpful for.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

# Everything from a reply header or a forwarded/original-message marker on is quoted text.
_QUOTE_START = re.compile(
    r"(?:^|\s)(?:On\s[^\n]{3,120}?\swrote:|-{2,}\s*(?:Original|Forwarded) Message\s*-{2,}|"
    r"From:\s[^\n]{1,120}?\s(?:Sent|Date):\s|Begin forwarded message:|_{8,})",
    re.IGNORECASE,
)
_QUOTED_LINE = re.compile(r"^\s*>.*$", re.MULTILINE)
# A greeting at the very start: "Hi team,", "Hello Parcelwise support -", "Dear Sir or Madam,".
_GREETING = re.compile(
    r"^\s*(?:hi|hello|hey|hiya|dear|good\s(?:morning|afternoon|evening|day)|greetings|to whom it may concern)"
    r"\b[^,.!:\n-]{0,40}[,.!:\n-]+\s*",
    re.IGNORECASE,
)
# A sign-off followed by at most a short block (name, role, company, phone) up to the end.
# The same after a subject line whose line break is gone ("Parcel late Hi team, ..."): near the start only.
_EARLY_GREETING = re.compile(
    r"(?:^|\s)(?:hi|hello|hey|dear|good\s(?:morning|afternoon|evening))\b[^,.!?:\n]{0,40}[,!:]\s*", re.IGNORECASE
)
_SIGN_OFF = re.compile(
    r"(?:^|[\s.!?])((?:best|kind|warm|warmest|many|with)?\s?regards|best wishes|all the best|"
    r"(?:many\s|thanks\s)?thanks(?:\sagain|\sa lot|\sin advance|\sso much)?|thank you(?:\sin advance|\sso much)?|"
    r"cheers|sincerely|yours(?:\struly|\ssincerely|\sfaithfully)?|best|cordially)\s*[,!.\-]*\s*\n?"
    r"(?=(?:\S+\s+){0,30}\S*$)",  # each word ends in whitespace: no ambiguous (exponential) backtracking
    re.IGNORECASE,
)
_SIGNATURE_DASHES = re.compile(r"(?:^|\n)--\s*\n.*$", re.DOTALL)
_MOBILE = re.compile(r"Sent from my [\w\s]{2,30}$", re.IGNORECASE)
# Sentences that carry no problem whatever the ticket: dropped wherever they stand.
_PLEASANTRY = re.compile(
    r"^(?:i\s)?hope\s(?:you|this|all|that|your)\b|^(?:i\s(?:hope|trust)\s)?(?:you(?:'re|\sare)\s(?:well|doing well))|"
    r"^(?:many\s)?thanks?(?:\syou)?(?:\sin advance|\sfor\s(?:your|any|the)\s(?:help|time|support|assistance))?"
    r"[\s!.,]*$|"
    r"^(?:any|your)\shelp\s(?:would be|is|will be)\s(?:much\s|greatly\s|really\s)?appreciated|"
    r"^(?:i\s)?look(?:ing)?\sforward\sto|^(?:please\s)?let me know if you need|^have a (?:great|nice|good)\b|"
    r"^(?:thanks|thank you)[^.!?]{0,40}(?:advance|help|time|patience)[.!]?$|^sorry to bother",
    re.IGNORECASE,
)
# "I hope this finds you well." inside a sentence (after a subject whose line break is gone).
_HOPE_CLAUSE = re.compile(r"\b(?:I\s)?(?:hope|trust)\s(?:this|you|all|that|your)\b[^.!?]{0,80}[.!?]", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])|\n+")


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text`` (at end punctuation before a capital, and at line breaks).

    >>> split_sentences("My parcel is late. Where is it?\\nOrder 123")
    ['My parcel is late.', 'Where is it?', 'Order 123']
    """
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]


def clean_ask(text: str) -> str:
    """``text`` without quoted replies, greeting, pleasantries and signature; the text itself when
    nothing would be left.

    >>> clean_ask("Hi team, I hope you're well. My parcel never arrived. Can you check? Thanks, Anna Smith, CFO")
    'My parcel never arrived. Can you check?'
    """
    original = " ".join(text.split())
    # One-line exports write a blank line (paragraph, signature, quoted reply) as two spaces.
    text = re.sub(r"(?<=\S) {2,}(?=\S)", "\n\n", text.strip())
    body = _QUOTED_LINE.sub("", text)
    quote = _QUOTE_START.search(body)
    if quote and quote.start() > 0:
        body = body[: quote.start()]
    body = _SIGNATURE_DASHES.sub("", body)
    body = _MOBILE.sub("", body.rstrip())
    # The subject line comes first in a ticket's text; a greeting may open the line after it.
    lines = body.split("\n")
    for i, line in enumerate(lines[:4]):
        if line.strip():
            stripped = _GREETING.sub("", line, count=1)
            if stripped != line:
                lines[i] = stripped
                break
    body = "\n".join(lines)
    body = _GREETING.sub("", body, count=1)
    early = _EARLY_GREETING.search(body)
    if early and early.start() < 100:
        body = f"{body[: early.start()]} {body[early.end() :]}"
    sign_off = _last_sign_off(body)
    if sign_off is not None:
        body = body[:sign_off]
    body = _HOPE_CLAUSE.sub(" ", body)
    sentences = [s for s in split_sentences(body) if not _PLEASANTRY.search(s)]
    sentences = [_GREETING.sub("", s, count=1) for s in sentences]
    cleaned = " ".join(" ".join(s.split()) for s in sentences if s.strip())
    return cleaned if len(cleaned.split()) >= 2 else original


def _last_sign_off(body: str) -> int | None:
    """Where the signature starts: a sign-off word followed by no more than a short block, in the
    second half of the text (a "thanks" early on is part of the message)."""
    matches = list(_SIGN_OFF.finditer(body))
    if not matches:
        return None
    start = matches[0].start(1)
    return start if start >= len(body) // 3 else None


def best_sentences(sentences: Sequence[str], vectors: np.ndarray, targets: np.ndarray, *, keep: int = 3) -> list[str]:
    """The ``keep`` sentences whose vectors are nearest any of ``targets`` (e.g. the passages of the
    article the ticket was marked helpful for), in their original order.

    ``vectors`` and ``targets`` are unit-normalised rows.

    >>> v = np.eye(3); best_sentences(["a", "b", "c"], v, v[[2, 0]], keep=2)
    ['a', 'c']
    """
    if len(sentences) <= keep or len(targets) == 0:
        return list(sentences)
    nearest = (np.asarray(vectors) @ np.asarray(targets).T).max(axis=1)
    chosen = sorted(np.argsort(-nearest, kind="stable")[:keep])
    return [sentences[i] for i in chosen]

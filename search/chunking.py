"""Token-aware passages: windows of the embedder's own tokens, with overlap, the title carried into each.

Windows restart at every section (heading) of the article, so an edit re-embeds only the passages
of the sections it touched; inside a long section they overlap by ``overlap`` tokens and end, when
they can, at a sentence or line end rather than mid-sentence.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Offsets = list[tuple[int, int]]
TokenOffsets = Callable[[str], Offsets]

_SENTENCE_END = {".", "!", "?", ":", ";"}
# Sections shorter than this (a heading followed straight by a sub-heading) join the next one.
MIN_SECTION_TOKENS = 24


@dataclass(frozen=True)
class PassageDraft:
    position: int
    text: str
    text_hash: str
    token_count: int


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _windows(text: str, offsets: Offsets, window: int, overlap: int) -> list[tuple[str, int]]:
    n = len(offsets)
    if n == 0:
        return []
    if n <= window:
        return [(text[offsets[0][0] : offsets[-1][1]], n)]

    def ends_sentence(j: int) -> bool:
        # Token j-1 closes a sentence, or a line break sits between tokens j-1 and j.
        prev_start, prev_end = offsets[j - 1]
        return text[prev_start:prev_end] in _SENTENCE_END or "\n" in text[prev_end : offsets[j][0]]

    out = []
    start = 0
    while start < n:
        end = min(start + window, n)
        if end < n:
            floor = start + max(1, int(window * 0.6))
            for j in range(end, floor, -1):
                if ends_sentence(j):
                    end = j
                    break
        out.append((text[offsets[start][0] : offsets[end - 1][1]], end - start))
        if end >= n:
            break
        start = max(end - overlap, start + 1)
    return out


def split_passages(
    title: str,
    sections: Sequence[str],
    *,
    token_offsets: TokenOffsets,
    window: int = 200,
    overlap: int = 40,
    max_tokens: int | None = None,
) -> list[PassageDraft]:
    """Split an article into passages ``"<title>\\n\\n<window of text>"``.

    ``token_offsets(text)`` returns the (start, end) character span of each token of ``text``, without
    special tokens; ``max_tokens`` is the embedder's input limit, which shrinks the window when a long
    title would push a passage past it.

    >>> words = lambda s: [(m.start(), m.end()) for m in __import__("re").finditer(r"\\S+", s)]
    >>> [p.text for p in split_passages("Refunds", ["one two three four five"], token_offsets=words, window=3,
    ...                                 overlap=1)]
    ['Refunds\\n\\none two three', 'Refunds\\n\\nthree four five']
    """
    title = title.strip()
    title_tokens = len(token_offsets(title))
    if max_tokens is not None:
        # [CLS] title [SEP]-like separators: leave 4 tokens of room.
        window = max(32, min(window, max_tokens - title_tokens - 4))
    overlap = min(overlap, window // 2)

    merged: list[str] = []
    carry = ""
    for i, section in enumerate(sections):
        if i == 0 and section.split("\n", 1)[0].strip().lower() == title.lower():
            # Bodies often start with the title as a heading; the passage prefix already says it.
            section = section.split("\n", 1)[1].strip() if "\n" in section else ""
        section = f"{carry}\n\n{section}".strip() if carry else section
        if not section:
            continue
        if len(token_offsets(section)) < MIN_SECTION_TOKENS and i < len(sections) - 1:
            carry = section
            continue
        carry = ""
        merged.append(section)
    if carry:
        merged.append(carry)

    drafts: list[PassageDraft] = []
    for section in merged:
        for chunk, count in _windows(section, token_offsets(section), window, overlap):
            passage = f"{title}\n\n{chunk}" if chunk else title
            drafts.append(PassageDraft(len(drafts), passage, text_hash(passage), count + title_tokens))
    if not drafts and title:
        drafts.append(PassageDraft(0, title, text_hash(title), title_tokens))
    return drafts

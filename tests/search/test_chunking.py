from __future__ import annotations

import re

from search.chunking import split_passages
from search.indexing import _token_offsets_fn


def words(text: str):
    return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def test_every_passage_starts_with_the_title_and_windows_overlap():
    text = " ".join(f"w{i}." if i % 10 == 9 else f"w{i}" for i in range(100))
    passages = split_passages("Title", [text], token_offsets=words, window=30, overlap=10)
    assert all(p.text.startswith("Title\n\n") for p in passages)
    bodies = [p.text.split("\n\n", 1)[1].split() for p in passages]
    assert bodies[0][0] == "w0" and bodies[-1][-1] == "w99."
    for first, second in zip(bodies, bodies[1:], strict=False):
        assert set(first[-5:]) & set(second), "consecutive windows overlap"
    # Windows end at a sentence end when one is near the limit.
    assert all(b[-1].endswith(".") for b in bodies[:-1])


def test_windows_restart_at_each_section_and_tiny_sections_join_the_next():
    sections = ["Intro", "A\n\n" + " ".join(["alpha"] * 40), "B\n\n" + " ".join(["beta"] * 40)]
    passages = split_passages("T", sections, token_offsets=words, window=100, overlap=10)
    assert len(passages) == 2
    assert "Intro" in passages[0].text and "alpha" in passages[0].text and "beta" not in passages[0].text
    assert "beta" in passages[1].text and "alpha" not in passages[1].text


def test_a_title_repeated_as_the_first_heading_is_not_repeated_in_the_passage():
    passages = split_passages("Reset", ["Reset\n\n" + " ".join(["word"] * 30)], token_offsets=words, window=100)
    assert passages[0].text == "Reset\n\n" + " ".join(["word"] * 30)


def test_passages_fit_the_embedders_input_with_its_own_tokenizer(embedder):
    offsets = _token_offsets_fn(embedder)
    long_title = "A rather long title about thermostats " * 4
    text = "The C-wire powers the thermostat. " * 300
    passages = split_passages(
        long_title, [text], token_offsets=offsets, window=200, overlap=40, max_tokens=embedder.model.max_seq_length
    )
    assert len(passages) > 5
    tokenizer = embedder.model.tokenizer
    for p in passages:
        assert len(tokenizer(p.text)["input_ids"]) <= embedder.model.max_seq_length
        assert p.text.startswith(long_title.strip())

"""The Inkwell held-out routing set (``eval_data/inkwell``) is what its sources build, and sound."""

from __future__ import annotations

import filecmp
import importlib.util
import itertools
import re
from collections import Counter
from pathlib import Path

from learning.routing_files import read_descriptions, read_labeled_tsv

HERE = Path(__file__).resolve().parents[2] / "eval_data" / "inkwell"


def _build_module():
    spec = importlib.util.spec_from_file_location("inkwell_build", HERE / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_files_are_what_the_hand_written_sources_build(tmp_path: Path) -> None:
    counts = _build_module().build(out=tmp_path)
    assert counts == {"test": 150, "stream": 271}
    names = sorted(p.name for p in tmp_path.iterdir())
    match, mismatch, errors = filecmp.cmpfiles(HERE, tmp_path, names, shallow=False)
    assert (mismatch, errors) == ([], []), "run python eval_data/inkwell/build.py and commit its output"


def test_every_team_has_fifteen_test_tickets_and_a_description_the_routing_command_reads() -> None:
    teams = read_descriptions(HERE / "teams.tsv")
    assert len(teams) == 10 and all(description for description, _ in teams.values())
    _, test_labels = read_labeled_tsv(HERE / "test.tsv")
    assert Counter(test_labels) == dict.fromkeys(teams, 15)
    _, stream_labels = read_labeled_tsv(HERE / "stream.tsv")
    assert set(stream_labels) == set(teams) and min(Counter(stream_labels).values()) >= 21


def test_no_two_tickets_are_near_copies() -> None:
    texts = [*read_labeled_tsv(HERE / "test.tsv")[0], *read_labeled_tsv(HERE / "stream.tsv")[0]]
    words = [set(re.findall(r"[\w']+", t.lower())) for t in texts]
    close = [
        (i, j)
        for i, j in itertools.combinations(range(len(texts)), 2)
        if len(words[i] & words[j]) > 0.6 * len(words[i] | words[j])
    ]
    assert close == []

"""``evaluate_routing --unlabeled``: self-training on a stream whose labels, if any, are never read."""

from __future__ import annotations

import itertools
import json
import random

import pytest
from django.core.management import CommandError, call_command

from tests.routing.test_evaluate_routing import ROWS, write_tsv

# 24 distinct tickets per team, written the way customers write them. Not told apart by their greetings:
# self-training reads each ticket's ask, and "Hi, X" and "Hello team, X" are one ticket.
OPENERS = ["Quick question:", "Urgent:", "Help please:", "Another problem:"]
ASKS = {
    "card_payment_declined": [
        "my card was declined at the supermarket today",
        "the shop refused my card payment twice",
        "my card payment did not go through online",
        "why does the terminal keep rejecting my card?",
        "card declined at the petrol station although I have money",
        "my payment with the card failed at checkout",
    ],
    "lost_password": [
        "I forgot my password and cannot log in",
        "how do I reset my password?",
        "the app says my password is wrong",
        "I am locked out after too many password attempts",
        "the password reset e-mail never arrives",
        "I cannot sign in since I changed my password",
    ],
    "parcel_late": [
        "my parcel has not arrived yet",
        "the delivery is a week late",
        "where is my order? the tracking has not moved",
        "the courier never delivered my package",
        "my parcel was due on Monday and is still missing",
        "the delivery date keeps moving and nothing arrives",
    ],
}
VOLATILE = ("seconds", "training_seconds", "training_cpu_seconds", "tickets_per_second", "load_seconds")


def stream_rows() -> list[tuple[str, str]]:
    rows = [(f"{o} {a}", label) for label, asks in ASKS.items() for o, a in itertools.product(OPENERS, asks)]
    random.Random(0).shuffle(rows)
    return rows


def write_stream(path, rows: list[tuple[str, str]], with_labels: bool = True) -> str:
    lines = ["text\tlabel" if with_labels else "text"]
    lines += [f"{text}\t{label}" if with_labels else text for text, label in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def strip_volatile(value):
    if isinstance(value, dict):
        return {k: strip_volatile(v) for k, v in value.items() if k not in VOLATILE}
    return value


@pytest.fixture
def files(tmp_path):
    return {
        "test": write_tsv(tmp_path / "test.tsv", ROWS),
        "dev": write_tsv(tmp_path / "dev.tsv", {label: texts[::-1] for label, texts in ROWS.items()}),
        "dir": tmp_path,
    }


def run(files, stream: str, name: str, **options) -> dict:
    out = files["dir"] / f"{name}.json"
    call_command(
        "evaluate_routing",
        test=files["test"],
        dev=files["dev"],
        scorer="embedding",
        unlabeled=stream,
        json_out=str(out),
        **options,
    )
    return json.loads(out.read_text())


def test_it_reports_the_zero_shot_and_the_self_trained_figures(files, capsys):
    result = run(files, write_stream(files["dir"] / "stream.tsv", stream_rows()), "st")
    assert result["scorer"] == "self-trained" and result["zero_shot_scorer"] == "embedding"
    assert result["model_version"].startswith("packaged:bge-small-en-v1.5@")
    assert result["accuracy"] >= 0.9 and result["accuracy_zero_shot"] >= 0.75
    assert 0 <= result["macro_f1"] <= 1 and result["ece_calibrated"] is not None
    assert set(result["coverage_at_precision"]) == {"0.9", "0.95"}
    st = result["self_training"]
    assert st["n_unlabeled"] == 72 and st["duplicates_removed"] == 0 and st["starved"] == []
    assert (
        set(st["pseudo_labels_per_class"]) == set(ROWS)
        and sum(st["pseudo_labels_per_class"].values()) == st["n_pseudo_labels"]
    )
    assert st["training_seconds"] > 0 and st["training_cpu_seconds"] > 0
    assert result["zero_shot"]["accuracy"] == result["accuracy_zero_shot"]
    table = capsys.readouterr().out
    assert "accuracy zero-shot (embedding)" in table and "pseudo-labels" in table


def test_the_label_column_of_the_stream_is_never_read(files):
    rows = stream_rows()
    labels = [label for _, label in rows]
    shuffled = random.Random(1).sample(labels, len(labels))
    variants = {
        "true": write_stream(files["dir"] / "true.tsv", rows),
        "shuffled": write_stream(
            files["dir"] / "shuffled.tsv", [(t, s) for (t, _), s in zip(rows, shuffled, strict=True)]
        ),
        "garbage": write_stream(files["dir"] / "garbage.tsv", [(t, "no-such-team") for t, _ in rows]),
        "none": write_stream(files["dir"] / "none.tsv", rows, with_labels=False),
    }
    results = {name: strip_volatile(run(files, path, name)) for name, path in variants.items()}
    assert results["true"] == results["shuffled"] == results["garbage"] == results["none"]


def test_a_stream_too_small_after_duplicates_is_refused_and_the_zero_shot_figures_stand(files, capsys):
    rows = [("My parcel has not arrived yet", "parcel_late")] * 300 + stream_rows()[:10]
    result = run(files, write_stream(files["dir"] / "flood.tsv", rows), "flood")
    refused = result["self_training"]["refused"]
    assert "at least 20 distinct tickets per team" in refused and "duplicates dropped" in refused
    assert result["scorer"] == "embedding" and result["accuracy"] == result["accuracy_zero_shot"]
    assert "self-training refused" in capsys.readouterr().err


def test_the_limit_takes_the_first_tickets_of_the_stream(files):
    result = run(files, write_stream(files["dir"] / "stream.tsv", stream_rows()), "limited", unlabeled_limit=30)
    assert result["self_training"]["n_unlabeled"] == 30 and "refused" in result["self_training"]


def test_a_stream_file_without_a_text_header_is_a_clear_error(files):
    path = files["dir"] / "bad.tsv"
    path.write_text("ticket\tteam\nhello\tx\n", encoding="utf-8")
    with pytest.raises(CommandError, match="first column must be headed 'text'"):
        run(files, str(path), "bad")
    with pytest.raises(CommandError, match="no such file"):
        run(files, str(files["dir"] / "missing.tsv"), "missing")

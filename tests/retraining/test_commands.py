"""The retrain and learning_curve commands."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from mlops.models import ModelVersion
from tests.retraining.builders import TOPICS, label_tickets

pytestmark = pytest.mark.django_db


def test_retrain_check_says_why_the_trigger_does_not_fire_and_queues_nothing(teams, capsys):
    label_tickets(teams, 2)
    call_command("retrain", "--check")
    out = capsys.readouterr().out
    assert "queue-a: 2 labels" in out and "trigger: not now (teams below 8 labels" in out
    assert not ModelVersion.objects.exists()


def test_retrain_if_needed_does_nothing_when_the_trigger_does_not_fire(teams, capsys):
    call_command("retrain", "--if-needed")
    assert not ModelVersion.objects.exists()


def test_retrain_inline_reports_a_failed_run(teams, settings, artifacts):
    settings.TRIAGE_RETRAIN_MIN_LABELS_PER_TEAM = 8
    label_tickets(teams, 3)
    with pytest.raises(CommandError, match="setfit-1 failed: need at least two active teams"):
        call_command("retrain", "--inline")
    assert ModelVersion.objects.get().status == "failed"


def test_retrain_refuses_to_queue_a_second_run(teams, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks():
        call_command("retrain")
    with pytest.raises(CommandError, match="already queued"):
        call_command("retrain")


@pytest.mark.slow
def test_learning_curve_writes_numbers_per_shot_count_and_a_plot(tmp_path, capsys):
    rows = ["text\tlabel"] + [f"{t}\t{slug}" for slug in ("queue-a", "queue-b", "queue-c") for t in TOPICS[slug]]
    train = tmp_path / "train.tsv"
    train.write_text("\n".join(rows[:1] + [r for i, r in enumerate(rows[1:]) if i % 14 < 10]) + "\n")
    test = tmp_path / "test.tsv"
    test.write_text("\n".join(rows[:1] + [r for i, r in enumerate(rows[1:]) if i % 14 >= 10]) + "\n")
    out, plot = tmp_path / "curve.json", tmp_path / "curve.png"
    call_command(
        "learning_curve",
        "--train", str(train),
        "--test", str(test),
        "--shots", "0,2",
        "--zero-shot", "embedding",
        "--set", "min_body_steps=2",
        "--set", "max_body_steps=2",
        "--json", str(out),
        "--plot", str(plot),
    )  # fmt: skip
    result = json.loads(out.read_text())
    assert result["complete"] and result["n_test"] == 12 and result["n_classes"] == 3
    assert [(r["method"], r["shots"]) for r in result["rows"]] == [
        ("nearest centroid", 2),
        ("SetFit", 2),
        ("zero-shot (embedding)", 0),
    ]
    setfit = result["rows"][1]
    assert 0.0 <= setfit["accuracy"] <= 1.0 and setfit["train_seconds"] > 0 and setfit["n_train"] == 6
    assert result["recipe"]["max_body_steps"] == 2
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert "SetFit" in capsys.readouterr().out


def test_learning_curve_refuses_a_file_without_the_header(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("hello\tworld\n")
    with pytest.raises(CommandError, match="header"):
        call_command("learning_curve", "--train", str(bad), "--test", str(bad))


def test_learning_curve_refuses_an_unknown_recipe_field(tmp_path):
    good = tmp_path / "good.tsv"
    good.write_text("text\tlabel\nhello\ta\n")
    with pytest.raises(CommandError, match="unknown recipe field"):
        call_command("learning_curve", "--train", str(good), "--test", str(good), "--set", "nope=1")


def _topic_files(tmp_path):
    rows = ["text\tlabel"] + [f"{t}\t{slug}" for slug in ("queue-a", "queue-b", "queue-c") for t in TOPICS[slug]]
    train = tmp_path / "train.tsv"
    train.write_text("\n".join(rows[:1] + [r for i, r in enumerate(rows[1:]) if i % 14 < 10]) + "\n")
    test = tmp_path / "test.tsv"
    test.write_text("\n".join(rows[:1] + [r for i, r in enumerate(rows[1:]) if i % 14 >= 10]) + "\n")
    return train, test


def test_learning_curve_compares_random_and_uncertainty_sampling_with_the_same_budget(tmp_path, capsys):
    train, test = _topic_files(tmp_path)
    out, plot = tmp_path / "curve.json", tmp_path / "curve.png"
    call_command(
        "learning_curve",
        "--train", str(train),
        "--test", str(test),
        "--shots", "2,4",
        "--strategy", "random,uncertainty,margin",
        "--learners", "examples,logistic",
        "--rounds", "2",
        "--seed", "0,1",
        "--zero-shot", "none",
        "--cache", str(tmp_path / "cache"),
        "--json", str(out),
        "--plot", str(plot),
    )  # fmt: skip
    result = json.loads(out.read_text())
    assert result["complete"] and result["strategies"] == ["random", "uncertainty", "margin"]
    assert result["rounds"] == 2 and result["seeds"] == [0, 1]
    rows = {(r["strategy"], r["method"], r["shots"], r["seed"]): r for r in result["rows"]}
    assert len(rows) == 3 * 2 * 2 * 2
    for (_strategy, _method, shots, _seed), row in rows.items():
        assert row["n_train"] == 3 * shots  # the same budget: shots x classes labels
        assert 0.0 <= row["accuracy"] <= 1.0
    # One summary row per strategy, learner and shot count: the mean over the two seeds, and their spread.
    assert len(result["summary"]) == 12 and all(s["n_seeds"] == 2 for s in result["summary"])
    for s in result["summary"]:
        runs = [
            r["accuracy"] for (st, m, k, _), r in rows.items() if (st, m, k) == (s["strategy"], s["method"], s["shots"])
        ]
        assert s["accuracy"] == pytest.approx(sum(runs) / 2, abs=1e-4)
        assert s["accuracy_std"] == pytest.approx(abs(runs[0] - runs[1]) / 2, abs=1e-4)
    assert "±" in capsys.readouterr().out and plot.read_bytes().startswith(b"\x89PNG")
    # The embeddings were cached on disk: a second run embeds nothing new.
    assert list((tmp_path / "cache").glob("embeddings-*.npz"))


def test_learning_curve_refuses_seeds_that_are_not_integers(tmp_path):
    good = tmp_path / "good.tsv"
    good.write_text("text\tlabel\nhello\ta\n")
    with pytest.raises(CommandError, match="--seed must be comma-separated integers"):
        call_command("learning_curve", "--train", str(good), "--test", str(good), "--seed", "0,one")


def test_uncertainty_sampling_asks_only_for_the_labels_it_chooses():
    from learning.curves import select_uncertain
    from mlops.inference.offline_scorers import EmbeddingScorer
    from mlops.inference.scorers import ClassSpec

    slugs = ("queue-a", "queue-b", "queue-c")
    pool = [t for slug in slugs for t in TOPICS[slug]]
    truth = [slug for slug in slugs for _ in TOPICS[slug]]
    asked: list[int] = []

    def oracle(i: int) -> str:
        asked.append(i)
        return truth[i]

    classes = [ClassSpec.from_label(slug) for slug in slugs]
    for diverse in (True, False):
        asked.clear()
        chosen, given = select_uncertain(EmbeddingScorer(), pool, oracle, classes, budget=7, rounds=3, diverse=diverse)
        assert len(chosen) == 7 == len(set(chosen)) and asked == chosen
        assert given == [truth[i] for i in chosen]


def test_learning_curve_refuses_an_unknown_strategy(tmp_path):
    good = tmp_path / "good.tsv"
    good.write_text("text\tlabel\nhello\ta\n")
    with pytest.raises(CommandError, match="--strategy takes"):
        call_command("learning_curve", "--train", str(good), "--test", str(good), "--strategy", "greedy")

"""evaluate_tags reports per-tag and set numbers on a small labelled file, and refuses bad files clearly."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from tags.services import create_tag_set

pytestmark = pytest.mark.django_db

LINES = [
    ("Hello, my thermostat has been offline since yesterday, can you help?", ["en"]),
    ("ok thanks, that fixed it", ["en"]),
    ("Hallo, mein Thermostat ist seit gestern offline. Können Sie mir helfen?", ["de"]),
    ("Danke, jetzt funktioniert alles wieder.", ["de"]),
    ("Bonjour, mon thermostat est hors ligne depuis hier.", ["fr", "urgent"]),
]
TOPICS_DEV = [
    ("I was charged twice for my subscription, refund one payment", ["billing"]),
    ("You took money for a plan I cancelled last month", ["billing"]),
    ("There is a charge on my card I never agreed to", ["billing"]),
    ("My parcel has not arrived, where is it?", ["delivery"]),
    ("The order is late and tracking has not moved", ["delivery"]),
    ("How do I rename a room in the app?", []),
    ("The camera goes offline every night", []),
]
TOPICS_TEST = [
    ("Why did you charge me twice this month?", ["billing"]),
    ("Tracking says delivered but no parcel here", ["delivery"]),
    ("Can I use the doorbell without a chime?", []),
]


def _write(path, lines) -> str:
    path.write_text("".join(json.dumps({"text": t, "tags": tags}) + "\n" for t, tags in lines))
    return str(path)


def test_it_reports_language_accuracy_and_per_tag_numbers(tmp_path):
    create_tag_set(
        "Language", kind="single", method="language", tags=[{"slug": c, "name": c} for c in ("en", "de", "fr")]
    )
    out = tmp_path / "report.json"
    call_command("evaluate_tags", test=_write(tmp_path / "t.jsonl", LINES), tagset="language", json_out=str(out))
    report = json.loads(out.read_text())
    assert report["n_test"] == 5 and report["scorer"] == "language"
    assert report["accuracy"] >= 0.8  # "ok thanks" is the hard one; the rest are clear
    assert set(report["tags"]) == {"en", "de", "fr"}
    for numbers in report["tags"].values():
        assert {"precision", "recall", "f1", "ece_before", "ece_after", "coverage_at_precision_0.9"} <= set(numbers)
    assert 0.0 <= report["macro_f1"] <= 1.0 and 0.0 <= report["micro_f1"] <= 1.0


def test_it_fits_calibration_and_thresholds_on_dev_for_an_offline_scorer(tmp_path):
    create_tag_set(
        "Topics",
        tags=[
            {"name": "billing", "description": "Charges, refunds and disputed payments."},
            {"name": "delivery", "description": "Parcels, shipping and tracking."},
        ],
    )
    out = tmp_path / "report.json"
    call_command(
        "evaluate_tags",
        test=_write(tmp_path / "test.jsonl", TOPICS_TEST),
        dev=_write(tmp_path / "dev.jsonl", TOPICS_DEV),
        tagset="Topics",
        scorer="embedding",
        json_out=str(out),
    )
    report = json.loads(out.read_text())
    assert report["calibration"] == "dev" and report["scorer"] == "embedding"
    assert report["fitted"]["billing"]["calibration"]["method"] == "logistic"
    assert report["tags"]["billing"]["ece_after"] is not None


def test_a_single_label_file_with_two_tags_of_the_set_on_a_line_is_refused_with_its_line(tmp_path):
    create_tag_set("Language", kind="single", method="language", tags=[{"slug": c, "name": c} for c in ("en", "de")])
    bad = _write(tmp_path / "bad.jsonl", [("hello", ["en"]), ("hallo hello", ["en", "de"])])
    with pytest.raises(CommandError, match="bad.jsonl:2: a single-label set"):
        call_command("evaluate_tags", test=bad, tagset="language")
    with pytest.raises(CommandError, match="no active tag set 'nope'"):
        call_command("evaluate_tags", test=bad, tagset="nope")
    (tmp_path / "broken.jsonl").write_text('{"text": "hi", "tags": ["en"]}\n{not json\n')
    with pytest.raises(CommandError, match="broken.jsonl:2: not JSON"):
        call_command("evaluate_tags", test=str(tmp_path / "broken.jsonl"), tagset="language")

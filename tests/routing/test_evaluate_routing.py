"""``evaluate_routing`` on small text<TAB>label files: the numbers it promises, and clear errors."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

ROWS = {
    "card_payment_declined": [
        "My card was declined at the supermarket",
        "Why did the shop refuse my card payment?",
        "The payment with my card did not go through",
        "Card declined when paying online",
    ],
    "lost_password": [
        "I forgot my password and cannot log in",
        "How do I reset my password?",
        "The app says my password is wrong",
        "Locked out after too many password attempts",
    ],
    "parcel_late": [
        "My parcel has not arrived yet",
        "The delivery is a week late",
        "Where is my order? Tracking has not moved",
        "The courier never delivered my package",
    ],
}


def write_tsv(path, rows: dict[str, list[str]], header: str = "text\tlabel") -> str:
    lines = [header] + [f"{text}\t{label}" for label, texts in rows.items() for text in texts]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture
def files(tmp_path):
    test = write_tsv(tmp_path / "test.tsv", ROWS)
    dev = write_tsv(tmp_path / "dev.tsv", {label: texts[::-1] for label, texts in ROWS.items()})
    descriptions = tmp_path / "descriptions.tsv"
    descriptions.write_text(
        "label\tdescription\n"
        "card_payment_declined\tA payment with the card was refused at a shop or online.\n"
        "lost_password\tThe customer cannot sign in because of a forgotten or wrong password.\n"
        "parcel_late\tAn order or parcel has not been delivered on time.\n",
        encoding="utf-8",
    )
    return {"test": test, "dev": dev, "descriptions": str(descriptions), "dir": tmp_path}


def test_it_reports_every_promised_number_as_a_table_and_json(files, db, capsys):
    out = files["dir"] / "result.json"
    call_command(
        "evaluate_routing",
        test=files["test"],
        dev=files["dev"],
        scorer="embedding",
        descriptions=files["descriptions"],
        json_out=str(out),
    )
    result = json.loads(out.read_text())
    for key in ("accuracy", "macro_f1", "balanced_accuracy", "ece_raw", "ece_calibrated", "per_class", "scorer"):
        assert key in result
    assert result["scorer"] == "embedding" and result["model_version"].startswith("packaged:all-MiniLM-L6-v2@")
    assert result["n_test"] == 12 and result["n_classes"] == 3
    assert result["accuracy"] >= 0.9
    assert set(result["coverage_at_precision"]) == {"0.9", "0.95"}
    assert 0 <= result["coverage_at_precision"]["0.9"] <= 1
    assert result["calibration"]["split"] == "dev" and result["calibration"]["temperature"] > 0
    assert set(result["per_class"]["lost_password"]) == {"precision", "recall", "f1", "support"}
    assert "on_test" in result["thresholds"]
    table = capsys.readouterr().out
    assert "accuracy" in table and "ECE calibrated" in table and "coverage @ 90% precision" in table


def test_without_labeled_calibration_data_there_is_no_calibrated_ece(files, db):
    out = files["dir"] / "raw.json"
    call_command("evaluate_routing", test=files["test"], scorer="embedding", json_out=str(out))
    result = json.loads(out.read_text())
    assert result["ece_calibrated"] is None and result["calibration"] == {"method": "none"}


def test_quoted_fields_are_read_like_banking77(files, db):
    path = files["dir"] / "quoted.tsv"
    path.write_text('text\tlabel\n"My ""card"" was\ndeclined"\tcard_payment_declined\nreset password\tlost_password\n')
    out = files["dir"] / "quoted.json"
    call_command("evaluate_routing", test=str(path), scorer="embedding", json_out=str(out))
    assert json.loads(out.read_text())["n_test"] == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        ("sentence\tintent\nhello\tgreet\n", "header must be 'text<TAB>label'"),
        ("text\tlabel\nhello\n", "line 2: expected 'text<TAB>label'"),
        ("text\tlabel\nhello\tgreet\n  \tgreet\n", "line 3: empty text"),
        ("text\tlabel\nhello\t \n", "line 2: empty label"),
        ("text\tlabel\n", "no rows"),
    ],
)
def test_bad_files_are_refused_with_the_line(files, db, content, message):
    path = files["dir"] / "bad.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CommandError, match=message):
        call_command("evaluate_routing", test=str(path), scorer="embedding")


def test_bad_arguments_are_refused(files, db, settings, tmp_path):
    with pytest.raises(CommandError, match="no such file"):
        call_command("evaluate_routing", test=str(tmp_path / "missing.tsv"))
    with pytest.raises(CommandError, match="unknown scorer 'psychic'"):
        call_command("evaluate_routing", test=files["test"], scorer="psychic")
    with pytest.raises(CommandError, match="has no {}"):
        call_command("evaluate_routing", test=files["test"], scorer="embedding", template="About billing.")
    settings.TRIAGE_NLI_MODEL = str(tmp_path / "no-nli")
    with pytest.raises(CommandError, match="could not be loaded.*evaluate offline"):
        call_command("evaluate_routing", test=files["test"], scorer="nli")


def test_a_label_described_twice_is_refused(files, db):
    path = files["dir"] / "twice.tsv"
    path.write_text("a\tfirst\na\tsecond\n", encoding="utf-8")
    with pytest.raises(CommandError, match="described twice"):
        call_command("evaluate_routing", test=files["test"], scorer="embedding", descriptions=str(path))


def test_it_evaluates_an_nli_model_given_as_a_local_path(files, db, settings, nli_models):
    settings.TRIAGE_NLI_MODEL = nli_models["bert"]
    out = files["dir"] / "nli.json"
    call_command("evaluate_routing", test=files["test"], dev=files["dev"], scorer="nli", json_out=str(out))
    result = json.loads(out.read_text())
    assert result["scorer"] == "nli" and result["scorer_config"]["entailment_id"] == 0

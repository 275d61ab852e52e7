from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from search.importers import import_articles
from search.models import Article


def jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_it_imports_jsonl_and_a_second_import_changes_nothing(tmp_path, teams, capsys):
    rows = [
        {
            "id": "kb-1",
            "title": "Refunds",
            "body": "Ask **within** 14 days.",
            "url": "https://h.example/1",
            "team": "billing",
        },
        {"id": "kb-2", "title": "Passwords", "body": "<p>Tap <b>Forgot</b>.</p>", "format": "html"},
    ]
    path = jsonl(tmp_path / "kb.jsonl", rows)
    call_command("import_articles", str(path), "--no-index")
    assert "2 created" in capsys.readouterr().out
    assert Article.objects.get(external_id="kb-2").body_text == "Tap Forgot."
    call_command("import_articles", str(path), "--no-index")
    assert "0 created, 0 updated, 2 unchanged" in capsys.readouterr().out
    rows[0]["body"] = "Ask within 30 days."
    report, written = import_articles(jsonl(path, rows), index=False)
    assert (report.created, report.updated, report.unchanged) == (0, 1, 1)
    assert written == [Article.objects.get(external_id="kb-1").pk]


def test_a_file_with_any_bad_row_imports_nothing_and_names_every_problem(tmp_path, db):
    path = tmp_path / "kb.jsonl"
    path.write_bytes(
        b'{"id": "a", "title": "Good", "body": "fine"}\n'
        b'{"id": "b", "title": "", "body": "x"}\n'
        b"not json\n"
        b'{"id": "a", "title": "Again", "body": "dup"}\n'
        b'{"id": "c", "title": "Bad", "body": "caf\xe9"}\n'
    )
    report, _ = import_articles(path, index=False)
    assert [str(e) for e in report.errors] == [
        "line 2: title: is required and cannot be blank",
        "line 3: row: invalid JSON: Expecting value at column 1",
        "line 4: external_id: duplicate of line 1",
        "line 5: row: not valid UTF-8 (byte 40)",
    ]
    assert Article.objects.count() == 0
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_articles", str(path))


def test_it_imports_a_directory_of_markdown_html_and_text(tmp_path, db):
    (tmp_path / "billing").mkdir()
    (tmp_path / "billing" / "refunds.md").write_text(
        "---\ntitle: Refunds policy\nurl: https://h.example/refunds\n---\n# Ignored heading\n\nAsk within 14 days.\n"
    )
    (tmp_path / "reset.html").write_text(
        "<html><head><title>Reset your password</title><script>steal()</script></head>"
        "<body><p onclick='x()'>Tap Forgot.</p></body></html>"
    )
    (tmp_path / "shipping-times.txt").write_text("Orders ship in 2 days.")
    (tmp_path / "notes.pdf").write_bytes(b"%PDF-1.4\x00")
    report, written = import_articles(tmp_path, index=False)
    assert report.ok and report.created == 3 and len(written) == 3
    md = Article.objects.get(external_id="billing/refunds.md")
    assert (md.title, md.url, md.body_format) == ("Refunds policy", "https://h.example/refunds", "markdown")
    html = Article.objects.get(external_id="reset.html")
    assert html.title == "Reset your password" and html.body_text == "Tap Forgot."
    assert "onclick" not in html.body_html and "steal" not in html.body_html
    assert Article.objects.get(external_id="shipping-times.txt").title == "Shipping times"


def test_binary_non_utf8_and_huge_files_are_refused_with_their_names(tmp_path, db, settings):
    settings.SEARCH_ARTICLE_MAX_CHARS = 1000
    (tmp_path / "ok.md").write_text("# Fine\n\nText.")
    (tmp_path / "image.md").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (tmp_path / "latin1.txt").write_bytes("first line\ncaf\xe9".encode("latin-1"))
    (tmp_path / "huge.md").write_text("word " * 300)
    (tmp_path / "enormous.md").write_text("x" * 5000)
    report, _ = import_articles(tmp_path, index=False)
    assert sorted(str(e) for e in report.errors) == [
        "line 1: enormous.md: body: file is 5,000 bytes; the body limit is 1,000 characters",
        "line 1: huge.md: body: is 1,499 characters long; the limit is 1,000",
        "line 1: image.md: file: is binary (it contains NUL bytes), not an article",
        "line 2: latin1.txt: file: is not valid UTF-8 (byte 14); save it as UTF-8",
    ]
    assert Article.objects.count() == 0


def test_an_unknown_file_type_or_empty_directory_is_a_clear_error(tmp_path, db):
    (tmp_path / "data.csv").write_text("a,b")
    with pytest.raises(CommandError, match="unknown format '.csv'"):
        call_command("import_articles", str(tmp_path / "data.csv"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CommandError, match="no article files"):
        call_command("import_articles", str(tmp_path / "empty"))


def test_sync_import_indexes_with_progress(tmp_path, db, capsys):
    path = jsonl(tmp_path / "kb.jsonl", [{"id": "a", "title": "Refunds", "body": "Ask within 14 days."}])
    call_command("import_articles", str(path), "--sync")
    out = capsys.readouterr().out
    assert "indexed 1/1 articles" in out
    assert Article.objects.searchable().count() == 1

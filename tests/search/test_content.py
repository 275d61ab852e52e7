from __future__ import annotations

from search.content import guess_format, html_to_sections, render_body


def test_it_removes_scripts_handlers_and_javascript_links_from_html():
    body = (
        '<h2>Help</h2><p onclick="steal()">Read <a href="javascript:alert(1)">this</a> and '
        '<a href="https://example.com/a">that</a>.</p><script>alert("x")</script><style>p{}</style>'
        '<img src="x.png" onerror="alert(2)">'
    )
    rendered = render_body(body, "html")
    assert "<script" not in rendered.html and "alert" not in rendered.html
    assert "onclick" not in rendered.html and "onerror" not in rendered.html
    assert "javascript:" not in rendered.html
    assert 'href="https://example.com/a"' in rendered.html
    assert "alert" not in rendered.text and "p{}" not in rendered.text
    assert rendered.text == "Help\n\nRead this and that."


def test_it_renders_markdown_and_sanitises_raw_html_inside_it():
    rendered = render_body("# Title\n\nSome **bold** text.\n\n<script>evil()</script>\n\n- one\n- two", "markdown")
    assert "<strong>bold</strong>" in rendered.html
    assert "script" not in rendered.html and "evil" not in rendered.text
    assert rendered.sections == ("Title\n\nSome bold text.\n\n- one\n- two",)


def test_plain_text_is_escaped_for_display():
    rendered = render_body("a < b & c\n\nsecond paragraph", "text")
    assert rendered.html == "<p>a &lt; b &amp; c</p>\n<p>second paragraph</p>"
    assert rendered.text == "a < b & c\n\nsecond paragraph"


def test_each_heading_starts_a_section():
    sections = html_to_sections("<p>intro</p><h2>A</h2><p>alpha</p><h3>B</h3><p>beta</p>")
    assert sections == ["intro", "A\n\nalpha", "B\n\nbeta"]


def test_table_cells_stay_on_one_line():
    sections = html_to_sections("<table><tr><th>Plan</th><th>Price</th></tr><tr><td>Plus</td><td>$4</td></tr></table>")
    assert sections == ["Plan | Price |\nPlus | $4 |"]


def test_format_is_guessed_from_extension_then_content():
    assert guess_format("a.md", "<p>x</p>") == "markdown"
    assert guess_format("a.htm", "x") == "html"
    assert guess_format("a.txt", "# x") == "text"
    assert guess_format("a", "<!DOCTYPE html><p>x</p>") == "html"

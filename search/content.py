"""Article bodies: sanitised HTML for display and plain text, split into sections, for indexing.

Markdown is rendered to HTML first; any HTML (written or rendered) is cleaned with ``nh3`` before it is
stored or shown, so ``<script>``, event handlers and ``javascript:`` links never reach a page. The text
for indexing is read from that cleaned HTML: script and style contents are dropped, block elements
become line breaks, and each heading starts a new *section* (passages never straddle two sections, so
an edit re-embeds only the sections it touched).
"""

from __future__ import annotations

import html as html_lib
import re
from dataclasses import dataclass
from html.parser import HTMLParser

import markdown as markdown_lib
import nh3

# Their content is code or data, never words for a reader.
_SKIP_CONTENT = {"script", "style", "noscript", "template", "iframe", "object", "svg", "math", "head", "title"}
_BLOCK = {
    "p",
    "div",
    "br",
    "hr",
    "li",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "tr",
    "table",
    "thead",
    "tbody",
    "pre",
    "blockquote",
    "section",
    "article",
    "header",
    "footer",
    "nav",
    "aside",
    "figure",
    "figcaption",
    "details",
    "summary",
    "caption",
}
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_WHITESPACE = re.compile(r"\s+")
_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_MANY_NEWLINES = re.compile(r"\n{3,}")


@dataclass(frozen=True)
class Rendered:
    html: str
    text: str
    sections: tuple[str, ...]


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[list[str]] = [[]]
        self._skip = 0
        self._pre = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "pre":
            self._pre += 1
        if tag in _SKIP_CONTENT:
            self._skip += 1
        elif tag in _HEADINGS:
            self.sections.append(["\n"])
        elif tag in _BLOCK and tag != "tr":  # a row ends its line; starting one needs no second break
            self.sections[-1].append("\n- " if tag == "li" else "\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self._pre = max(0, self._pre - 1)
        if tag in _SKIP_CONTENT:
            self._skip = max(0, self._skip - 1)
        elif tag in _HEADINGS or (tag in _BLOCK and tag != "li"):
            self.sections[-1].append("\n")
        elif tag in ("td", "th"):
            self.sections[-1].append(" | ")

    def handle_startendtag(self, tag: str, attrs) -> None:
        if tag in ("br", "hr"):
            self.sections[-1].append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            # Outside <pre>, line breaks in HTML source are just spaces; blocks make the lines.
            self.sections[-1].append(data if self._pre else _WHITESPACE.sub(" ", data))


def _normalise(text: str) -> str:
    lines = [_SPACES.sub(" ", line).strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return _MANY_NEWLINES.sub("\n\n", "\n".join(lines)).strip()


def html_to_sections(html: str) -> list[str]:
    """Plain text of ``html``, one string per heading-led section, empty sections dropped.

    >>> html_to_sections("<h2>Reset</h2><p>Tap <b>Forgot</b>.</p><script>x()</script><h2>Locked</h2><p>Wait.</p>")
    ['Reset\\n\\nTap Forgot.', 'Locked\\n\\nWait.']
    """
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    sections = []
    for index, parts in enumerate(parser.sections):
        text = _normalise("".join(parts))
        if text and index > 0:
            # Sections after the first start with their heading: a blank line follows it, as a paragraph.
            text = re.sub(r"^([^\n]+)\n(?!\n)", r"\1\n\n", text, count=1)
        if text:
            sections.append(text)
    return sections


def sanitise_html(html: str) -> str:
    """HTML that is safe to show: allowed tags and attributes only, no scripts, styles or handlers."""
    return nh3.clean(
        html, clean_content_tags={"script", "style", "noscript", "template", "iframe", "object", "head", "title"}
    )


def render_body(body: str, body_format: str) -> Rendered:
    """Render an article body as written into display HTML and indexable text.

    >>> r = render_body("# Refunds\\n\\nAsk within **30 days**.<script>alert(1)</script>", "markdown")
    >>> r.html
    '<h1>Refunds</h1>\\n<p>Ask within <strong>30 days</strong>.</p>'
    >>> r.text
    'Refunds\\n\\nAsk within 30 days.'
    """
    if body_format == "markdown":
        raw_html = markdown_lib.markdown(body, extensions=["extra", "sane_lists"], output_format="html")
    elif body_format == "html":
        raw_html = body
    elif body_format == "text":
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", body) if p.strip()]
        raw_html = "\n".join("<p>" + html_lib.escape(p).replace("\n", "<br>") + "</p>" for p in paragraphs)
    else:
        raise ValueError(f"unknown body format {body_format!r}")
    clean = sanitise_html(raw_html).strip()
    sections = tuple(html_to_sections(clean))
    return Rendered(html=clean, text="\n\n".join(sections), sections=sections)


def guess_format(filename: str, body: str) -> str:
    """Format of an article file from its extension, or from its content when the extension says nothing."""
    name = filename.lower()
    if name.endswith((".md", ".markdown")):
        return "markdown"
    if name.endswith((".html", ".htm")):
        return "html"
    if name.endswith(".txt"):
        return "text"
    return "html" if re.match(r"\s*<(!doctype|html|body|div|p|h[1-6]|article)\b", body, re.I) else "markdown"


def passage_excerpt(text: str, title: str, length: int = 320) -> str:
    """A matching passage shown under its article's title: without the title it starts with (passages
    carry it for indexing), blank lines squeezed, cut to ``length`` characters. Plain text: the page
    escapes it like any other text.

    >>> passage_excerpt("Refunds\\n\\nAsk within 14 days.", "Refunds")
    'Ask within 14 days.'
    """
    if text.startswith(title):
        text = text[len(title) :]
    text = re.sub(r"\n\s*\n+", "\n", text).strip()
    return text if len(text) <= length else text[: length - 1].rstrip() + "…"

"""Server-side plots as inline SVG strings (matplotlib, Agg, no pyplot state shared between requests).

Each function draws numbers that the template also shows as a table beside the plot; the plot is
for looking, the table for reading. Text stays text in the SVG (``svg.fonttype = none``), so the
page stays small and searchable.
"""

from __future__ import annotations

import functools
import io
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from learning.quality import Confusion, Reliability
from learning.tuning import CurvePoint

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_RC = {
    "svg.fonttype": "none",
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_XML_PROLOGUE = re.compile(r"^.*?(?=<svg)", re.DOTALL)
# matplotlib's one <style> element (stroke joins and caps); the Content-Security-Policy refuses inline
# <style>, so the same rule lives in static/learning/pages.css.
_STYLE_ELEMENT = re.compile(r"<style[^>]*>.*?</style>", re.DOTALL)
ACCENT = "#2563eb"
WARN = "#dc2626"
MUTED = "#6b7280"


def _rc():
    """matplotlib's settings for these plots, matplotlib imported on first use: every process that loads
    the URLs imports this module (Celery workers too, whose start-up checks read them), and matplotlib
    costs each ~38 MB."""
    import matplotlib

    matplotlib.use("Agg")
    return matplotlib.rc_context(_RC)


_CACHE: OrderedDict[str, str] = OrderedDict()
_CACHE_SIZE = 256
_CACHE_LOCK = threading.Lock()


def _cached(draw: Callable[..., str]) -> Callable[..., str]:
    """Drawing takes a few hundred milliseconds; the same numbers always give the same picture, so
    each process keeps the most recent SVGs by the repr of their inputs (frozen dataclasses, lists)."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs) -> str:
        key = f"{draw.__name__}:{args!r}:{sorted(kwargs.items())!r}"
        with _CACHE_LOCK:
            if key in _CACHE:
                _CACHE.move_to_end(key)
                return _CACHE[key]
        svg = draw(*args, **kwargs)
        with _CACHE_LOCK:
            _CACHE[key] = svg
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
        return svg

    return wrapper


def _svg(fig: Figure, label: str) -> str:
    buffer = io.StringIO()
    with _rc():
        fig.savefig(buffer, format="svg", bbox_inches="tight")
    svg = _STYLE_ELEMENT.sub("", _XML_PROLOGUE.sub("", buffer.getvalue(), count=1), count=1)
    # Screen readers announce the plot by its label; the table beside it carries the numbers.
    safe = label.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    return svg.replace("<svg ", f'<svg role="img" aria-label="{safe}" class="plot" ', 1)


def _figure(width: float = 4.2, height: float = 3.2) -> Figure:
    with _rc():
        from matplotlib.figure import Figure

        fig = Figure(figsize=(width, height), layout="constrained")
        fig.add_subplot()
    return fig


@_cached
def precision_recall_svg(
    points: Sequence[CurvePoint],
    name: str,
    *,
    current: CurvePoint | None = None,
    proposed: CurvePoint | None = None,
    noun: str = "team",
) -> str:
    """The precision-recall curve of one class (``noun`` ``name``: a team, a tag), each point a threshold,
    with the saved threshold and, when it differs, the one being tried marked."""
    fig = _figure()
    with _rc():
        ax = fig.axes[0]
        drawn = [p for p in points if p.precision is not None and p.recall is not None]
        if drawn:
            ax.plot([p.recall for p in drawn], [p.precision for p in drawn], color=ACCENT, marker=".", lw=1.2, ms=3)
        else:
            ax.text(0.5, 0.5, "no labeled predictions", ha="center", va="center", color=MUTED, transform=ax.transAxes)
        for point, colour, which in ((current, "black", "saved"), (proposed, WARN, "trying")):
            if point is None or point.precision is None or point.recall is None:
                continue
            if which == "trying" and current is not None and point.threshold == current.threshold:
                continue
            ax.plot([point.recall], [point.precision], marker="o", ms=7, mfc="none", mec=colour, mew=1.6, ls="none")
            ax.annotate(
                f"{which} θ={point.threshold:.2f}",
                (point.recall, point.precision),
                textcoords="offset points",
                xytext=(6, -12 if which == "trying" else 6),
                color=colour,
            )
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(f"Precision-recall: {name}")
        ax.grid(alpha=0.25)
    return _svg(fig, f"Precision-recall curve of {noun} {name}")


@_cached
def reliability_svg(result: Reliability, title: str) -> str:
    """Reliability diagram: accuracy per confidence bin against the diagonal of perfect calibration,
    bar widths proportional to nothing (counts are in the table), ECE in the title."""
    fig = _figure(3.6, 3.2)
    with _rc():
        ax = fig.axes[0]
        ax.plot([0, 1], [0, 1], ls="--", color=MUTED, lw=1)
        filled = [b for b in result.bins if b.count]
        width = (result.bins[0].upper - result.bins[0].lower) if result.bins else 0.1
        ax.bar(
            [b.lower for b in filled],
            [b.accuracy for b in filled],
            width=width,
            align="edge",
            color=ACCENT,
            alpha=0.75,
            edgecolor="white",
        )
        ax.plot(
            [b.mean_confidence for b in filled],
            [b.accuracy for b in filled],
            marker="o",
            ms=3,
            ls="none",
            color="black",
        )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ece = "n/a" if result.ece is None else f"{result.ece:.3f}"
        ax.set_title(f"{title} (ECE {ece}, n={result.count})")
        ax.grid(alpha=0.25)
    return _svg(fig, f"Reliability diagram: {title}")


@_cached
def confusion_svg(result: Confusion) -> str:
    """Heat map of labels (rows) against top teams (columns), counts written in the cells."""
    size = max(3.2, 0.42 * len(result.classes) + 1.6)
    fig = _figure(size, size * 0.9)
    with _rc():
        ax = fig.axes[0]
        matrix = result.matrix or [[0]]
        ax.imshow(matrix, cmap="Blues")
        top = max((max(row) for row in matrix), default=0)
        for i, row in enumerate(result.matrix):
            for j, value in enumerate(row):
                if value:
                    ax.text(j, i, str(value), ha="center", va="center", color="white" if value > top / 2 else "black")
        ax.set_xticks(range(len(result.classes)), result.classes, rotation=45, ha="right")
        ax.set_yticks(range(len(result.classes)), result.classes)
        ax.set_xlabel("predicted (top team)")
        ax.set_ylabel("label")
        ax.set_title("Confusion matrix")
    return _svg(fig, "Confusion matrix of labels against predicted teams")


@_cached
def weekly_trend_svg(rows: Sequence[dict], metric: str, title: str) -> str:
    """One line per model version: ``metric`` by ISO week."""
    fig = _figure(5.0, 2.8)
    with _rc():
        ax = fig.axes[0]
        weeks = sorted({r["week"] for r in rows})
        position = {w: i for i, w in enumerate(weeks)}
        versions: dict[str, list[dict]] = {}
        for r in rows:
            versions.setdefault(r["model_version"], []).append(r)
        plotted = False
        for name, version_rows in versions.items():
            pts = sorted((position[r["week"]], r[metric]) for r in version_rows if r[metric] is not None)
            if pts:
                ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", ms=3, lw=1.2, label=name)
                plotted = True
        ax.set_xticks(range(len(weeks)), weeks, rotation=30, ha="right")
        ax.set_ylim(0, 1.02)
        ax.set_title(title)
        ax.grid(alpha=0.25)
        if plotted:
            ax.legend(fontsize=7, frameon=False)
        else:
            ax.text(0.5, 0.5, "no data yet", ha="center", va="center", color=MUTED, transform=ax.transAxes)
    return _svg(fig, title)

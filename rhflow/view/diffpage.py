"""The HTML page of a comparison: changed images side by side, with their difference figures.

Like the report it is one self-contained file: inline style, images linked by relative paths.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from rhflow.record.manifest import write_atomic
from rhflow.view.diff import Comparison, ImagePair, TaskChange, summary_lines
from rhflow.view.report import relative_src

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
.pair{display:flex;gap:1em;align-items:flex-start}.pair figure{margin:0}
.pair img{display:block;max-width:384px;max-height:384px;min-width:128px}
.task{border-top:1px solid #ddd;padding:.5em 0}.note{color:#666;font-size:12px}
"""


def render_diff(comparison: Comparison, page: Path) -> str:
    where = page.parent
    lines = summary_lines(comparison)
    sections = [
        f"<h1>rhflow diff: {escape(comparison.pipelines[0])}</h1>",
        f"<p>A: {escape(str(comparison.a))}<br>B: {escape(str(comparison.b))}</p>",
        f'<p id="totals">{escape(lines[-1])}</p>',
        _section("Changed", [t for t in comparison.tasks if t.kind == "changed"], where),
        _listing("Added (only in B)", comparison, "added"),
        _listing("Removed (only in A)", comparison, "removed"),
        f"<p>{comparison.count('unchanged')} tasks unchanged (same output bytes).</p>",
    ]
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>rhflow diff</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )


def _section(title: str, changes: list[TaskChange], where: Path) -> str:
    items = "".join(_change(change, where) for change in changes) or "<p>None.</p>"
    return f'<section id="changed"><h2>{escape(title)}</h2>{items}</section>'


def _change(change: TaskChange, where: Path) -> str:
    reasons = "; ".join(change.reasons)
    pairs = "".join(_pair(pair, where) for pair in change.images)
    return (
        f'<div class="task"><h3>{escape(change.title())}</h3>'
        f'<p class="note">{escape(reasons)}</p>{pairs}</div>'
    )


def _pair(pair: ImagePair, where: Path) -> str:
    figures = []
    for side, path in (("A", pair.a), ("B", pair.b)):
        if path is not None and path.is_file() and pair.difference is not None:
            body = f'<img src="{relative_src(path, where)}" alt="{side}: output {pair.index}">'
        else:
            body = f"<span>{escape(path.name if path else 'no file')}</span>"
        caption = f"{side}, output {pair.index}"
        figures.append(f"<figure>{body}<figcaption>{caption}</figcaption></figure>")
    return f'<div class="pair">{"".join(figures)}</div>'


def _listing(title: str, comparison: Comparison, kind: str) -> str:
    items = "".join(f"<li>{escape(t.title())}</li>" for t in comparison.tasks if t.kind == kind)
    listed = f"<ul>{items}</ul>" if items else "<p>None.</p>"
    return f"<section><h2>{escape(title)}</h2>{listed}</section>"


def write_diff_page(comparison: Comparison, page: Path) -> None:
    write_atomic(page, render_diff(comparison, page).encode("utf-8"))

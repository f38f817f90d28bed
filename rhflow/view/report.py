"""The HTML report of a run: one self-contained page, readable from disk with no server.

``render_report`` turns a manifest into the page's text: the run's summary, per step a grid of
its images (laid out by :func:`rhflow.view.grid.arrange`, columns and rows by the step's first
two varying parameters), the failures with their reasons, and every task with its parameters,
coins and timings. Images are linked by paths relative to the page, styles and the filter
script are inline, and nothing is fetched from the network. Selecting a parameter's value
hides the cells and rows of the other tasks (inline JavaScript, no server).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rhflow.record.costs import money_text, money_totals, spend_text
from rhflow.record.manifest import Manifest, TaskEntry, write_atomic
from rhflow.view.grid import Cell, Grid, arrange, cell_of, show, value_key

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}td,th{padding:.25em .5em;text-align:left;vertical-align:top}
.tasks td,.tasks th,.summary td,.summary th{border-bottom:1px solid #ddd}
.grid td{border:1px solid #ddd}
.grid img{display:block;min-width:128px;max-width:256px;max-height:256px}
.grid .failed,.tasks .failed{background:#fad2d2}.grid .missing{background:#e8e8e8}
.grid .nofile{background:#eee2c8}.note{color:#666;font-size:12px}
#filters label{margin-right:1em}.hidden{display:none}
"""

SCRIPT = """
(function () {
  var selects = Array.prototype.slice.call(document.querySelectorAll('#filters select'));
  var shown = document.getElementById('shown');
  function apply() {
    var wanted = {};
    selects.forEach(function (s) { if (s.value !== '') wanted[s.dataset.param] = s.value; });
    var items = document.querySelectorAll('[data-params]');
    var visible = 0;
    Array.prototype.forEach.call(items, function (el) {
      var params = JSON.parse(el.dataset.params);
      var keep = Object.keys(wanted).every(function (k) { return params[k] === wanted[k]; });
      el.classList.toggle('hidden', !keep);
      if (keep && el.tagName === 'TR' && el.parentNode.parentNode.id === 'task-table') visible++;
    });
    shown.textContent = visible + ' of ' + shown.dataset.total + ' tasks shown';
  }
  selects.forEach(function (s) { s.addEventListener('change', apply); });
  apply();
})();
"""


def render_report(manifest: Manifest, base: Path, page: Path) -> str:
    """The report page of ``manifest`` (whose output paths are relative to ``base``) for a page
    written at ``page``."""
    where = page.parent
    steps = list(dict.fromkeys(t.step for t in manifest.tasks))
    body = [
        f"<h1>{escape(manifest.pipeline)}</h1>",
        _summary(manifest),
        _filters(manifest.tasks),
        *(_step(manifest, step, base, where) for step in steps),
        _failures(manifest.tasks),
        _tasks(manifest.tasks),
    ]
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>rhflow report: {escape(manifest.pipeline)}</title>"
        f"<style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + f"\n<script>{SCRIPT}</script>\n</body></html>\n"
    )


def _summary(manifest: Manifest) -> str:
    counts = ", ".join(f"{n} {k}" for k, n in manifest.counts.items() if k != "total" and n)
    wall = _seconds_between(manifest.started_at, manifest.finished_at)
    server = manifest.server or {}
    rows = [
        ("status", manifest.status),
        ("tasks", f"{manifest.counts.get('total', len(manifest.tasks))} ({counts or 'none'})"),
        ("coins", _number(manifest.cost.get("coins"))),
        *([("money", money_text(money))] if (money := manifest.cost.get("money")) else []),
        ("remote seconds", _number(manifest.cost.get("cost_time"))),
        ("wall time", f"{wall:.1f} s" if wall is not None else "-"),
        ("started", manifest.started_at),
        ("finished", manifest.finished_at or "-"),
        (
            "server",
            f"{server.get('origin', '-')}" + (" (emulator)" if server.get("emulated") else ""),
        ),
        ("pipeline file", manifest.source or "-"),
        ("shard", manifest.shard or "-"),
        ("rhflow", manifest.rhflow_version),
    ]
    cells = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in rows)
    errors = "".join(f"<li>{escape(e)}</li>" for e in manifest.errors)
    return (
        f'<section id="summary"><table class="summary">{cells}</table>'
        + (f"<h3>Run errors</h3><ul>{errors}</ul>" if errors else "")
        + "</section>"
    )


def _filters(tasks: tuple[TaskEntry, ...]) -> str:
    values: dict[str, dict[str, Any]] = {}
    for task in tasks:
        for name, value in task.params.items():
            values.setdefault(name, {}).setdefault(value_key(value), value)
    selects = []
    for name, options in values.items():
        items = "".join(
            f'<option value="{escape(k)}">{escape(show(v))}</option>' for k, v in options.items()
        )
        selects.append(
            f'<label>{escape(name)} <select data-param="{escape(name)}">'
            f'<option value="">all</option>{items}</select></label>'
        )
    return (
        f'<section id="filters"><h2>Filter</h2>{"".join(selects)}'
        f'<span id="shown" data-total="{len(tasks)}"></span></section>'
    )


def _params_attr(params: Mapping[str, Any]) -> str:
    keys = {name: value_key(value) for name, value in params.items()}
    return escape(json.dumps(keys, ensure_ascii=False), quote=True)


def _step(manifest: Manifest, step: str, base: Path, where: Path) -> str:
    tasks = [t for t in manifest.tasks if t.step == step]
    names = list(dict.fromkeys(k for t in tasks for k in t.params))
    varying = [n for n in names if len({value_key(t.params.get(n)) for t in tasks}) > 1]
    axes = varying or names
    spent = spend_text(sum(t.coins or 0.0 for t in tasks), money_totals(tasks))
    durations = [t.duration for t in tasks if t.duration is not None]
    mean = f"{sum(durations) / len(durations):.1f} s" if durations else "-"
    head = (
        f'<section class="step" id="step-{escape(step)}"><h2>Step {escape(step)}</h2>'
        f'<p class="note">{len(tasks)} tasks, {escape(spent)}, mean duration {mean}</p>'
    )
    if not axes:
        cells = "".join(f"<td>{_cell(cell_of(t, base), where)}</td>" for t in tasks)
        return f'{head}<table class="grid"><tr>{cells}</tr></table></section>'
    grid = arrange(manifest, base, axes[0], axes[1] if len(axes) > 1 else None, step)
    return head + _grid(grid, where) + "</section>"


def _grid(grid: Grid, where: Path) -> str:
    parts = [
        f'<p class="note">columns {escape(grid.x)}'
        + (f", rows {escape(grid.y)}" if grid.y else "")
        + "</p>"
    ]
    header = "".join(f"<th>{escape(grid.x)}={escape(show(v))}</th>" for v in grid.columns)
    for section in grid.sections:
        if section.title:
            parts.append(f"<h3>{escape(section.title)}</h3>")
        rows = [f"<tr><th></th>{header}</tr>"]
        for r, value in enumerate(grid.rows):
            label = f"{escape(grid.y)}={escape(show(value))}" if grid.y else ""
            cells = "".join(
                _grid_cell(section.cells[(r, c)], where) for c in range(len(grid.columns))
            )
            rows.append(f"<tr><th>{label}</th>{cells}</tr>")
        parts.append(f'<table class="grid">{"".join(rows)}</table>')
    return "".join(parts)


def _grid_cell(cell: Cell, where: Path) -> str:
    css = {"image": "image", "missing": "missing", "failed": "failed", "no file": "nofile"}
    attrs = f' class="{css.get(cell.state, "other")}"'
    if cell.task is not None:
        attrs += f' data-params="{_params_attr(cell.task.params)}"'
    return f"<td{attrs}>{_cell(cell, where)}</td>"


def _cell(cell: Cell, where: Path) -> str:
    task = cell.task
    if cell.state == "image" and cell.image is not None and task is not None:
        src = relative_src(cell.image, where)
        alt = escape(", ".join(f"{k}={show(v)}" for k, v in task.params.items()))
        return f'<img src="{src}" alt="{alt}"><span class="note">{_task_note(task)}</span>'
    text = cell.label if cell.state != "image" else "not an image"
    return f"<span>{escape(text)}</span>"


def relative_src(path: Path, where: Path) -> str:
    """The URL of file ``path`` in a page written in folder ``where``: relative, so no server."""
    return quote(Path(os.path.relpath(path.absolute(), where.absolute())).as_posix())


def _task_note(task: TaskEntry) -> str:
    parts = [task.id[:10]]
    if task.coins is not None:
        parts.append(f"{_number(task.coins)} coins")
    if task.money is not None:
        parts.append(money_text({task.currency or "": task.money}))
    if task.duration is not None:
        parts.append(f"{task.duration:.1f} s")
    return escape(", ".join(parts))


def _failures(tasks: Iterable[TaskEntry]) -> str:
    failed = [t for t in tasks if t.status in ("failed", "cancelled")]
    if not failed:
        return '<section id="failures"><h2>Failures</h2><p>None.</p></section>'
    items = "".join(
        f'<li data-params="{_params_attr(t.params)}">{escape(t.step)} '
        f"[{escape(_params_text(t.params))}]"
        + (f" (task {escape(t.task_id)})" if t.task_id else "")
        + f": {escape(t.failure or t.status)}</li>"
        for t in failed
    )
    return f'<section id="failures"><h2>Failures</h2><ul>{items}</ul></section>'


def _tasks(tasks: Iterable[TaskEntry]) -> str:
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "task",
            "step",
            "parameters",
            "status",
            "attempts",
            "coins",
            "remote s",
            "duration s",
            "outputs",
            "failure",
        )
    )
    rows = "".join(_task_row(t) for t in tasks)
    return (
        f'<section id="tasks"><h2>Tasks</h2><table class="tasks" id="task-table">'
        f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></section>"
    )


def _task_row(task: TaskEntry) -> str:
    outputs = ", ".join(escape(o.path or "-") for o in task.outputs) or "-"
    cells = [
        escape(task.id),
        escape(task.step),
        escape(_params_text(task.params)),
        escape(task.status),
        str(task.attempts),
        _number(task.coins)
        + ("" if task.money is None else f" / {money_text({task.currency or '': task.money})}"),
        _number(task.cost_time),
        _number(task.duration),
        outputs,
        escape(task.failure or ""),
    ]
    css = ' class="failed"' if task.status == "failed" else ""
    return (
        f'<tr{css} data-params="{_params_attr(task.params)}">'
        + "".join(f"<td>{c}</td>" for c in cells)
        + "</tr>"
    )


def _params_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={show(v)}" for k, v in params.items()) or "-"


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:g}"


def _seconds_between(start: str | None, end: str | None) -> float | None:
    try:
        first = datetime.fromisoformat(str(start).replace("Z", "+00:00"))
        last = datetime.fromisoformat(str(end).replace("Z", "+00:00"))
        return (last - first).total_seconds()
    except (ValueError, TypeError):  # unreadable, or one stamp with a zone and one without
        return None


def write_report(manifest: Manifest, base: Path, page: Path) -> None:
    """Write the report page of ``manifest`` to ``page`` atomically."""
    write_atomic(page, render_report(manifest, base, page).encode("utf-8"))

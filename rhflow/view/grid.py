"""The X/Y grid of a sweep: which task goes in which cell, and the contact sheet drawn from it.

``arrange`` is pure: it picks one step's tasks from a manifest and lays them out, columns by the
values of parameter ``x``, rows by those of ``y``, in the order the sweep made them. Any other
parameter that varies splits the grid into sections, one per combination (a Z axis), so no task
is hidden behind another. ``draw`` renders a grid as a PNG contact sheet with the axis values
written on it; a cell without a task, a failed task and a task whose file is missing each look
different and say so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rhflow.errors import UsageError
from rhflow.record.manifest import Manifest, TaskEntry
from rhflow.view import images

#: Longest side of a cell, in pixels: larger images are scaled down, smaller ones up to MIN_CELL.
MAX_CELL = 384
#: Largest sheet drawn (width x height); a bigger one would need gigabytes of memory.
MAX_PIXELS = 100_000_000
MIN_CELL = 128
PAD = 8
TEXT = 14
LINE = TEXT + 6

COLORS: Mapping[str, images.Color] = {
    "image": (255, 255, 255),
    "missing": (232, 232, 232),
    "failed": (250, 210, 210),
    "no file": (238, 226, 200),
    "not an image": (220, 230, 245),
    "pending": (240, 240, 205),
}


def show(value: Any) -> str:
    """A parameter value as written on a grid: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def value_key(value: Any) -> str:
    """A parameter value as compared and filtered on (the same text in Python and in a page)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Cell:
    """One cell: its task (None when the sweep has no task there) and what it shows."""

    task: TaskEntry | None
    image: Path | None
    state: str  # "image", "missing", "failed", "no file", or the task's status

    @property
    def label(self) -> str:
        if self.state == "image":
            return ""
        if self.state == "failed" and self.task and self.task.failure:
            return f"failed: {self.task.failure}"
        return self.state


@dataclass(frozen=True, slots=True)
class Section:
    """The cells of one combination of the parameters that are on neither axis."""

    title: str
    params: Mapping[str, Any]
    cells: Mapping[tuple[int, int], Cell]  # (row, column) -> cell


@dataclass(frozen=True, slots=True)
class Grid:
    pipeline: str
    step: str
    x: str
    y: str | None
    columns: tuple[Any, ...]
    rows: tuple[Any, ...]  # (None,) without a y axis
    sections: tuple[Section, ...]


def arrange(
    manifest: Manifest, base: Path, x: str, y: str | None = None, step: str | None = None
) -> Grid:
    """Lay out the tasks of ``step`` (found from ``x`` when None) by parameters ``x`` and ``y``.

    ``base`` is the manifest's folder (output paths are relative to it).
    """
    step = step or _step_with(manifest, x)
    tasks = [t for t in manifest.tasks if t.step == step]
    if not tasks:
        steps = ", ".join(sorted({t.step for t in manifest.tasks})) or "none"
        raise UsageError(f"the manifest has no task of step {step!r}; steps are: {steps}")
    for axis in (x, y):
        if axis is not None and not any(axis in t.params for t in tasks):
            names = ", ".join(sorted({k for t in tasks for k in t.params})) or "none"
            raise UsageError(
                f"step {step!r} has no parameter {axis!r}; its parameters are: {names}"
            )
    if y == x:
        raise UsageError(f"--x and --y are both {x!r}; give two different parameters")
    columns = _values(tasks, x)
    rows = _values(tasks, y) if y else (None,)
    others = [k for k in _varying(tasks) if k not in (x, y)]
    return Grid(
        pipeline=manifest.pipeline,
        step=step,
        x=x,
        y=y,
        columns=columns,
        rows=rows,
        sections=_sections(tasks, base, x, y, columns, rows, others),
    )


def _step_with(manifest: Manifest, x: str) -> str:
    steps = list(dict.fromkeys(t.step for t in manifest.tasks if x in t.params))
    if len(steps) == 1:
        return steps[0]
    if not steps:
        names = sorted({k for t in manifest.tasks for k in t.params})
        raise UsageError(
            f"no task has a parameter {x!r}; parameters are: {', '.join(names) or 'none'}"
        )
    raise UsageError(f"steps {', '.join(steps)} all have parameter {x!r}; choose one with --step")


def _values(tasks: Sequence[TaskEntry], name: str | None) -> tuple[Any, ...]:
    seen: dict[str, Any] = {}
    for task in tasks:
        value = task.params.get(name) if name else None
        seen.setdefault(value_key(value), value)
    return tuple(seen.values())


def _varying(tasks: Sequence[TaskEntry]) -> list[str]:
    names = list(dict.fromkeys(k for t in tasks for k in t.params))
    return [n for n in names if len({value_key(t.params.get(n)) for t in tasks}) > 1]


def _sections(
    tasks: Sequence[TaskEntry],
    base: Path,
    x: str,
    y: str | None,
    columns: tuple[Any, ...],
    rows: tuple[Any, ...],
    others: list[str],
) -> tuple[Section, ...]:
    col_index = {value_key(v): i for i, v in enumerate(columns)}
    row_index = {value_key(v): i for i, v in enumerate(rows)}
    grouped: dict[str, tuple[dict[str, Any], dict[tuple[int, int], Cell]]] = {}
    for task in tasks:
        params = {k: task.params.get(k) for k in others}
        _, cells = grouped.setdefault(value_key(params), (params, {}))
        where = (
            row_index[value_key(task.params.get(y) if y else None)],
            col_index[value_key(task.params.get(x))],
        )
        cells.setdefault(where, cell_of(task, base))
    return tuple(
        Section(
            title=", ".join(f"{k}={show(v)}" for k, v in params.items()),
            params=params,
            cells={
                (r, c): cells.get((r, c), Cell(None, None, "missing"))
                for r in range(len(rows))
                for c in range(len(columns))
            },
        )
        for params, cells in grouped.values()
    )


def cell_of(task: TaskEntry, base: Path) -> Cell:
    """What a task's cell shows: its first image output, or why there is none."""
    if task.status != "succeeded":
        return Cell(task, None, task.status)
    for output in task.outputs:
        if images.is_image(output.path) and output.path:
            path = base / output.path
            return Cell(task, path, "image" if path.is_file() else "no file")
    return Cell(task, None, "not an image" if task.outputs else "no file")


# -- drawing ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sheet:
    """Where ``draw`` put everything, in pixels: for checking a sheet and for tests."""

    size: tuple[int, int]
    cell_size: tuple[int, int]
    cells: dict[tuple[int, int, int], images.Box] = field(default_factory=dict)
    column_labels: dict[tuple[int, int], images.Box] = field(default_factory=dict)
    row_labels: dict[tuple[int, int], images.Box] = field(default_factory=dict)
    section_titles: dict[int, images.Box] = field(default_factory=dict)


def draw(grid: Grid, out: Path) -> Sheet:
    """Draw ``grid`` as a labelled contact sheet and write it to ``out`` as PNG."""
    cell_w, cell_h = _cell_size(grid)
    label_w = PAD * 2 + max(
        [images.text_size(_row_label(grid, r), TEXT)[0] for r in grid.rows] + [0]
    )
    col_w = max(cell_w, *(images.text_size(_col_label(grid, c), TEXT)[0] for c in grid.columns))
    title = f"{grid.pipeline} / {grid.step}: columns {grid.x}" + (
        f", rows {grid.y}" if grid.y else ""
    )
    titled = any(section.title for section in grid.sections)
    section_h = (LINE + PAD if titled else 0) + LINE + len(grid.rows) * (cell_h + PAD)
    width = max(
        label_w + len(grid.columns) * (col_w + PAD) + PAD,
        images.text_size(title, TEXT)[0] + 2 * PAD,
    )
    height = PAD + LINE + len(grid.sections) * section_h + PAD
    if width * height > MAX_PIXELS:
        raise UsageError(
            f"the grid would be {width} x {height} pixels, more than one sheet should hold; "
            "draw one step (--step), fewer columns or rows (--x, --y), or a narrower sweep "
            "(rhflow run --only/--limit into another folder)"
        )
    sheet = Sheet(size=(width, height), cell_size=(cell_w, cell_h))
    image = images.canvas(width, height)
    images.write(image, (PAD, PAD), title, size=TEXT)
    top = PAD + LINE
    for s, section in enumerate(grid.sections):
        _draw_section(image, sheet, grid, s, section, top, label_w, col_w)
        top += section_h
    images.save_png(image, out)
    return sheet


def _draw_section(
    image: Any,
    sheet: Sheet,
    grid: Grid,
    s: int,
    section: Section,
    top: int,
    label_w: int,
    col_w: int,
) -> None:
    cell_w, cell_h = sheet.cell_size
    if section.title:
        sheet.section_titles[s] = (PAD, top, sheet.size[0] - PAD, top + LINE)
        images.write(image, (PAD, top + 2), section.title, size=TEXT)
        top += LINE + PAD
    for c, value in enumerate(grid.columns):
        left = label_w + c * (col_w + PAD)
        box = (left, top, left + col_w, top + LINE)
        sheet.column_labels[(s, c)] = box
        images.write(image, (left, top + 2), _col_label(grid, value), size=TEXT)
    top += LINE
    for r, value in enumerate(grid.rows):
        row_top = top + r * (cell_h + PAD)
        if grid.y:
            box = (PAD, row_top, label_w - PAD, row_top + cell_h)
            sheet.row_labels[(s, r)] = box
            images.write(image, (PAD, row_top + (cell_h - TEXT) // 2), _row_label(grid, value))
        for c in range(len(grid.columns)):
            left = label_w + c * (col_w + PAD) + (col_w - cell_w) // 2
            box = (left, row_top, left + cell_w, row_top + cell_h)
            sheet.cells[(s, r, c)] = box
            _draw_cell(image, section.cells[(r, c)], box)


def _draw_cell(image: Any, cell: Cell, box: images.Box) -> None:
    picture = images.open_image(cell.image) if cell.image else None
    if picture is not None:
        images.paste_fitted(image, picture, box)
        return
    state = cell.state if cell.state != "image" else "no file"
    images.fill(image, box, COLORS.get(state, COLORS["pending"]))
    words = (cell.label if cell.state != "image" else "not an image").split()
    width = box[2] - box[0] - 2 * PAD
    for n, line in enumerate(_wrap(words, width)[: max(1, (box[3] - box[1]) // LINE - 1)]):
        images.write(image, (box[0] + PAD, box[1] + PAD + n * LINE), line, size=TEXT - 2)


def _wrap(words: list[str], width: int) -> list[str]:
    lines: list[str] = []
    for word in words:
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and images.text_size(candidate, TEXT - 2)[0] <= width:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines


def _cell_size(grid: Grid) -> tuple[int, int]:
    sizes = [
        images.size_of(cell.image)
        for section in grid.sections
        for cell in section.cells.values()
        if cell.image
    ]
    known = [s for s in sizes if s]
    width = max([w for w, _ in known] + [1])
    height = max([h for _, h in known] + [1])
    scale = min(max(1.0, MIN_CELL / max(width, height)), MAX_CELL / max(width, height))
    return round(width * scale), round(height * scale)


def _col_label(grid: Grid, value: Any) -> str:
    return f"{grid.x}={show(value)}"


def _row_label(grid: Grid, value: Any) -> str:
    return f"{grid.y}={show(value)}" if grid.y else ""

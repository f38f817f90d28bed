"""What ``rhflow plan`` prints: the plan table, or the plan as JSON."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from rhflow.model import PlannedTask, TaskGraph
from rhflow.planning.overrides import encode

_PARAMS_WIDTH = 60


# -- plan ------------------------------------------------------------------------------------


def plan_json(graph: TaskGraph) -> dict[str, Any]:
    """``{"pipeline": NAME, "tasks": [...]}``; fields in docs/reference/pipelines/planning.md"""
    base = graph.source.parent.absolute()
    return {"pipeline": graph.pipeline, "tasks": [_task_json(t, base) for t in graph.tasks]}


def _task_json(task: PlannedTask, base: Path) -> dict[str, Any]:
    return {
        "id": task.id,
        "step": task.step,
        "params": _plain(task.params),
        "node_info_list": [_plain(entry) for entry in task.node_info_list],
        "needs": list(task.upstream_ids),
        "target": _target_json(task),
        "files": [
            {"index": f.index, "path": _relative(f.path, base), "sha256": f.sha256}
            for f in task.files
        ],
        "deferred": [{"index": d.index, "template": d.template} for d in task.deferred],
    }


def _plain(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A dict the encoder takes (a mapping that is one already is not copied)."""
    return mapping if type(mapping) is dict else dict(mapping)


def _target_json(task: PlannedTask) -> dict[str, Any]:
    target: dict[str, Any] = {"kind": task.target.kind, "id": task.target.id}
    if task.target.quick_create_code is not None:
        target["quick_create_code"] = task.target.quick_create_code
    return target


def _relative(path: Path, base: Path) -> str:
    try:
        return Path(os.path.relpath(path, base)).as_posix()
    except ValueError:
        return path.as_posix()


def plan_json_text(graph: TaskGraph) -> str:
    """The plan as one JSON object, each task on a line of its own."""
    return "".join(plan_json_chunks(graph))


def plan_json_chunks(
    graph: TaskGraph, batch: int = 1000, *, extra: Mapping[str, Any] | None = None
) -> Iterator[str]:
    """``plan_json_text`` in pieces of ``batch`` tasks, so that a large plan is written out
    as it is serialised instead of being held whole (the same text, joined). A task is one
    line: compact JSON is what the C encoder writes, several times faster than an indented
    layout, and a line per task is easy to grep. ``extra`` keys (the cost estimate) follow
    the tasks."""
    yield '{\n  "pipeline": ' + _dumps(graph.pipeline) + ',\n  "tasks": ['
    line = _TaskLine(graph.source.parent.absolute())
    for start in range(0, len(graph.tasks), batch):
        line.entries.clear()  # bounded: what the tasks of a batch share
        texts = [line.text(t) for t in graph.tasks[start : start + batch]]
        yield ("\n    " if start == 0 else ",\n    ") + ",\n    ".join(texts)
    yield "\n  ]" if graph.tasks else "]"
    for key, value in (extra or {}).items():  # after the tasks, as in plan_json(...) | extra
        text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
        yield f",\n  {_dumps(key)}: " + text.replace("\n", "\n  ")
    yield "\n}"


_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)  # one, not one per call


def _dumps(value: Any) -> str:
    return encode(value, _ENCODER)


#: ``_dumps`` of a string (ensure_ascii=False)
_string: Callable[[str], str] = json.encoder.encode_basestring


class _TaskLine:
    """``_dumps(_task_json(task, base))``, with what a step's tasks share (step, target, files,
    deferred values: the same objects for every task of a step) encoded once per step, and
    ``node_info_list`` entries that tasks share (the planner hands fixed values and repeated
    renderings to many tasks as one dict) once per batch."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.shared: dict[tuple[int, ...], tuple[str, str]] = {}
        self.entries: dict[int, tuple[Mapping[str, Any], str]] = {}

    def text(self, task: PlannedTask) -> str:
        key = (id(task.step), id(task.target), id(task.files), id(task.deferred))
        found = self.shared.get(key)
        if found is None:
            whole = _task_json(task, self.base)
            found = self.shared[key] = (
                _dumps(whole["step"]),
                ", ".join(f'"{name}": {_dumps(whole[name])}' for name in _SHARED_FIELDS),
            )
        step, shared = found
        entries = ", ".join([self._entry(entry) for entry in task.node_info_list])
        needs = _dumps(list(task.upstream_ids)) if task.needs else "[]"
        return (
            f'{{"id": {_string(task.id)}, "step": {step}, "params": {_dumps(_plain(task.params))}, '
            f'"node_info_list": [{entries}], "needs": {needs}, {shared}}}'
        )

    def _entry(self, entry: Mapping[str, Any]) -> str:
        found = self.entries.get(id(entry))
        if found is None:  # (the entry is kept with its text, so its id is not reused)
            found = self.entries[id(entry)] = (entry, _dumps(_plain(entry)))
        return found[1]


#: The fields of ``_task_json`` after ``needs``, in order: the same for every task of a step.
_SHARED_FIELDS = ("target", "files", "deferred")


def plan_table(graph: TaskGraph) -> str:
    """A readable table: task id, step, parameters, upstream ids; then the count per step."""
    rows = [("TASK", "STEP", "PARAMS", "NEEDS")]
    rows += [
        (t.id, t.step, _params_text(t.params), ", ".join(t.upstream_ids) or "-")
        for t in graph.tasks
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + "  "
        + row[3]
        for row in rows
    ]
    counts = Counter(t.step for t in graph.tasks)
    per_step = ", ".join(f"{step} {n}" for step, n in counts.items())
    summary = f"{count_tasks(len(graph.tasks))} in pipeline '{graph.pipeline}'"
    lines.append(f"{summary}: {per_step}" if per_step else summary)
    return "\n".join(line.rstrip() for line in lines)


def _params_text(params: Mapping[str, Any]) -> str:
    text = " ".join(f"{k}={_scalar(v)}" for k, v in params.items()) or "-"
    return text if len(text) <= _PARAMS_WIDTH else text[: _PARAMS_WIDTH - 3] + "..."


def _scalar(value: Any) -> str:
    if isinstance(value, str) and value and not any(c in value for c in " ,=\"'"):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def count_tasks(n: int) -> str:
    """``1 task``, ``3 tasks``."""
    return f"{n} task" if n == 1 else f"{n} tasks"

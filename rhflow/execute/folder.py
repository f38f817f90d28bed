"""The output folder's rules, checked before a run sends anything.

An output folder holds the results of one pipeline on one server:

- **one server**: a task that succeeded (or may still be running) on another server is not done
  for this run; the run stops, naming both servers, unless ``--force`` runs everything again here
  (:func:`check_server`);
- **one pipeline**: a folder holding another pipeline's run is not silently taken over
  (:func:`check_pipeline`, ``--overwrite`` to take it anyway);
- **no silent overwrite**: a file recorded for a task that is not in this plan (other
  parameters, an edited prompt) would be replaced by a task of this run whose ``outputs`` template
  gives the same name; the run stops naming both tasks (:func:`check_overwrites`);
- **no orphan**: files of tasks that left the plan are *stale*; ``rhflow status`` lists them,
  ``rhflow run --prune`` removes them (:func:`stale_outputs`, :func:`prune`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rhflow.api.client import BUILTIN_EMULATOR, origin_of
from rhflow.errors import PlanError, UsageError
from rhflow.execute.transfers import intact, safe_destination
from rhflow.model import PlannedTask, TaskGraph
from rhflow.record.store import ACTIVE, Store, TaskRecord

#: Statuses whose record stands for a result (or a paid task that may still produce one).
_HOLDING = ACTIVE | {"succeeded"}


class FolderError(UsageError):
    """The output folder belongs to another server or pipeline, or a file would be replaced."""


def same_server(recorded: str | None, current: str) -> bool:
    """A record without a server (never submitted) belongs to any; else compare origins."""
    return recorded is None or origin_of(recorded) == origin_of(current)


def foreign_results(records: Iterable[TaskRecord], server: str) -> list[TaskRecord]:
    """Records holding results (or live remote tasks) of another server than ``server``."""
    return [r for r in records if r.status in _HOLDING and not same_server(r.server, server)]


def check_server(store: Store, server: str, *, output_dir: Path) -> None:
    """Refuse a folder whose results come from another server (see the module docstring)."""
    foreign = foreign_results(store.tasks().values(), server)
    if not foreign:
        return
    others = sorted({origin_of(r.server or "") for r in foreign})
    live = sum(1 for r in foreign if r.status != "succeeded")
    what = f"{len(foreign)} task(s) of {output_dir} have results from {', '.join(others)}"
    if live:
        what += f" ({live} may still be running there)"
    here = origin_of(server)
    raise FolderError(
        f"{what}, not from {here}, the server of this run; those results do not count here. "
        f"Run into another folder (--out DIR), or run every task again on {here} (--force)"
    )


def check_pipeline(store: Store, graph: TaskGraph, manifest_name: str | None) -> None:
    """Refuse a folder that holds the run of another pipeline (``--overwrite`` skips this)."""
    other = store.meta("pipeline") or manifest_name
    if other is None or other == graph.pipeline:
        return
    raise FolderError(
        f"{graph.output_dir} holds a run of pipeline '{other}', not '{graph.pipeline}'; "
        "run into another folder (--out DIR), or replace its manifest and share the folder "
        "(--overwrite)"
    )


@dataclass(frozen=True, slots=True)
class Clash:
    """A file recorded for ``owner`` (not in this plan) that ``task`` would write over."""

    path: Path
    owner: TaskRecord
    task: PlannedTask


def check_overwrites(graph: TaskGraph, records: Mapping[str, TaskRecord]) -> None:
    """Refuse a run that would replace a file recorded for a task outside the plan."""
    clashes = overwrites(graph, records)
    if not clashes:
        return
    first = clashes[0]
    changed = _changed(first.owner, first.task)
    hint = f" (they differ in {', '.join(changed)})" if changed else ""
    more = f"; {len(clashes) - 1} more file(s) likewise" if len(clashes) > 1 else ""
    raise FolderError(
        f"task {first.task.id[:10]} {dict(first.task.params)} of step '{first.task.step}' would "
        f"write {_rel(first.path, graph.output_dir)}, which holds the output of task "
        f"{first.owner.id[:10]} {dict(first.owner.params)}{hint}{more}. Add the changed "
        "variable to the step's outputs: template, run into another folder (--out DIR), or "
        "replace the files (--overwrite)"
    )


def overwrites(graph: TaskGraph, records: Mapping[str, TaskRecord]) -> list[Clash]:
    """Files on disk, recorded for tasks not in ``graph``, that a planned task would write."""
    from rhflow.planning.planner import output_name

    planned = {t.id for t in graph.tasks}
    foreign: dict[tuple[int, str, str], dict[Path, TaskRecord]] = {}
    for record in records.values():
        if record.id in planned:
            continue
        for out in record.outputs:
            if out.path and Path(out.path).is_file():
                key = (out.index, Path(out.path).suffix.lstrip("."), out.node_id or "")
                foreign.setdefault(key, {})[Path(out.path).resolve()] = record
    clashes: list[Clash] = []
    if not foreign:
        return clashes
    for task in graph.tasks:
        if (done := records.get(task.id)) is not None and done.status == "succeeded":
            continue
        for (index, ext, node_id), owners in foreign.items():
            try:
                name = output_name(
                    task, index=index, ext=ext, node_id=node_id, task_short=task.id[:8]
                )
                dest = safe_destination(graph.output_dir, name)
            except PlanError:
                continue  # the run itself reports a bad outputs template
            if (owner := owners.get(dest)) is not None:
                clashes.append(Clash(dest, owner, task))
    return clashes


@dataclass(frozen=True, slots=True)
class Stale:
    """An output file of a task that is not in the folder's current plan."""

    path: Path
    task: TaskRecord


def stale_outputs(records: Iterable[TaskRecord], planned: Sequence[str]) -> list[Stale]:
    """Files still on disk, unchanged, of recorded tasks that are not in ``planned``."""
    keep = set(planned)
    found = []
    for record in records:
        if record.id in keep:
            continue
        for out in record.outputs:
            if out.path and intact(Path(out.path), out.sha256):
                found.append(Stale(Path(out.path), record))
    return found


def prune(store: Store, stale: Sequence[Stale], output_dir: Path) -> list[Path]:
    """Delete stale files (only inside ``output_dir``) and forget their tasks (the remote ids
    ever created stay recorded)."""
    root = output_dir.resolve()
    removed = []
    for item in stale:
        path = item.path.resolve()
        if not path.is_relative_to(root) or path == root:
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
        _remove_empty_parents(path.parent, root)
    store.forget(sorted({item.task.id for item in stale}))
    return removed


def _remove_empty_parents(folder: Path, root: Path) -> None:
    while folder != root and folder.is_relative_to(root):
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def _changed(owner: TaskRecord, task: PlannedTask) -> list[str]:
    """What tells the two tasks apart: parameters, else the node fields sent differently."""
    a, b = owner.params, task.params
    params = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if params or owner.node_info_list is None:
        return params
    sent = {
        (e.get("nodeId"), e.get("fieldName")): e.get("fieldValue") for e in owner.node_info_list
    }
    wanted = {
        (e.get("nodeId"), e.get("fieldName")): e.get("fieldValue") for e in task.node_info_list
    }
    return [
        f"node {node} {field}"
        for node, field in sorted(set(sent) | set(wanted), key=str)
        if sent.get((node, field)) != wanted.get((node, field))
    ]


def _fields(entries: Iterable[Mapping[str, object]]) -> dict[tuple[object, object], object]:
    return {(e.get("nodeId"), e.get("fieldName")): e.get("fieldValue") for e in entries}


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


__all__ = [
    "BUILTIN_EMULATOR",
    "Clash",
    "FolderError",
    "Stale",
    "check_overwrites",
    "check_pipeline",
    "check_server",
    "overwrites",
    "prune",
    "stale_outputs",
]

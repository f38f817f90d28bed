"""The manifest of a run, built from the state store and rewritten as the run goes on.

The store is the single record of what happened; the manifest is a readable view of it, written
atomically after changes (the executor decides how often) and once more at the end.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rhflow.model import PlannedTask, TaskGraph
from rhflow.record.jsontext import indented
from rhflow.record.manifest import (
    Manifest,
    OutputFile,
    TaskEntry,
    count_statuses,
    total_cost,
    write_atomic,
)
from rhflow.record.store import ACTIVE, Store, TaskRecord
from rhflow.version import __version__


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    stamp = datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def manifest_status(record: TaskRecord | None) -> str:
    """The five statuses a manifest shows, from the store's finer ones."""
    if record is None:
        return "pending"
    if record.status in ACTIVE:
        return "failed" if record.failure else "running"
    return record.status


def maybe_twice(record: TaskRecord, remote_ids: Sequence[str]) -> dict[str, Any] | None:
    """The manifest's ``maybe_twice`` of a task: set when a create of it got no answer."""
    if record.unanswered < 1:
        return None
    ids = list(dict.fromkeys([*remote_ids, *([record.remote_id] if record.remote_id else [])]))
    known = f"; known remote id(s): {', '.join(ids)}" if ids else "; no remote id is known"
    return {
        "task_ids": ids,
        "unanswered": record.unanswered,
        "reason": (
            f"may have been created twice: {record.unanswered} create request(s) got no "
            "answer (connection dropped, timed out or the run was killed), and RunningHub "
            f"offers no way to find a task without its id{known}"
        ),
    }


def task_entry(
    task: PlannedTask,
    record: TaskRecord | None,
    base: Path,
    progress: float | None,
    remote_ids: Sequence[str] = (),
) -> TaskEntry:
    """One manifest task from its plan and its record; output paths relative to ``base``."""
    if record is None:
        return TaskEntry(
            task.id, task.step, dict(task.params), None, None, "pending", 0, needs=dict(task.needs)
        )
    outputs = tuple(
        OutputFile(
            node_id=o.node_id,
            url=o.url,
            sha256=o.sha256,
            bytes=o.bytes,
            file_type=o.file_type,
            index=o.index,
            path=None if o.path is None else Path(os.path.relpath(o.path, base)).as_posix(),
        )
        for o in record.outputs
    )
    failure = record.failure or {}
    duration = None
    if record.submitted_at is not None and record.finished_at is not None:
        duration = round(max(0.0, record.finished_at - record.submitted_at), 3)
    return TaskEntry(
        id=task.id,
        step=task.step,
        params=dict(task.params),
        node_info_list=None if record.node_info_list is None else list(record.node_info_list),
        task_id=record.remote_id,
        status=manifest_status(record),
        attempts=record.attempts,
        outputs=outputs,
        needs=dict(task.needs),
        failure=failure.get("message"),
        failure_detail=record.failure,
        submitted_at=iso(record.submitted_at),
        finished_at=iso(record.finished_at),
        duration=duration,
        cost_time=record.cost_time,
        coins=record.coins,
        money=record.money,
        currency=record.currency,
        progress=progress,
        notes=record.notes,
        server=record.server,
        emulated=record.emulated,
        key=record.key,
        maybe_twice=maybe_twice(record, remote_ids),
    )


class Journal:
    """Writes the manifest of one run to ``path`` from ``store``.

    Each task's entry is kept with its JSON text and rebuilt only when the store says the task
    was written (``Store.take_changed``) or its progress moved, so a write costs the joining of
    the texts, not a rebuild of every entry: the run's cost stays linear in its tasks. The
    bytes are those ``write_manifest`` would write for the same manifest.
    """

    def __init__(
        self,
        path: Path,
        graph: TaskGraph,
        store: Store,
        *,
        shard: str | None = None,
        server: Mapping[str, Any] | None = None,
    ) -> None:
        self.path = path
        self.server = server
        self._graph = graph
        self._store = store
        self._shard = shard
        self._writing = threading.Lock()
        self._closed = False
        self._started = time.time()
        self._base = path.parent.resolve()
        self._tasks = {t.id: t for t in graph.tasks}
        self._entries: dict[str, TaskEntry] = {}
        self._texts: dict[str, str] = {}
        self._moved: set[str] = set()  # tasks whose progress changed since the last build
        self.errors: list[str] = []
        self.progress: dict[str, float] = {}
        #: ``{"max_coins", "estimate", "estimate_basis", "spent", "stopped", "max_money",
        #: "estimate_money", "spent_money"}`` of this run.
        self.budget: dict[str, Any] | None = None
        #: seconds the last manifest write took (the executor spaces writes by it)
        self.last_write = 0.0

    def set_progress(self, task_id: str, fraction: float) -> None:
        """A task's progress as its WebSocket reports it, for the next write."""
        if self.progress.get(task_id) != fraction:
            self.progress[task_id] = fraction
            self._moved.add(task_id)

    def _refresh(self) -> None:
        """Rebuild the entries of the tasks written since the last build."""
        changed = self._store.take_changed()
        moved, self._moved = self._moved, set()
        if not self._entries:
            wanted = [t.id for t in self._graph.tasks]
        else:
            wanted = [i for i in changed | moved if i in self._tasks]
        records = self._store.tasks(wanted) if wanted else {}
        for task_id in wanted:
            record = records.get(task_id)
            remote = self._store.remote_ids_of(task_id) if record and record.unanswered else ()
            entry = task_entry(
                self._tasks[task_id], record, self._base, self.progress.get(task_id), remote
            )
            self._entries[task_id] = entry
            self._texts[task_id] = _entry_text(entry)

    def counts(self) -> dict[str, int]:
        """Tasks per manifest status, as of the store now (not while a write rebuilds)."""
        with self._writing:
            self._refresh()
            return count_statuses(tuple(self._entries[t.id] for t in self._graph.tasks))

    def build(self, status: str, *, finished: bool = False) -> Manifest:
        self._refresh()
        tasks = tuple(self._entries[t.id] for t in self._graph.tasks)
        return Manifest(tasks=tasks, **self._head(status, tasks, finished=finished))

    def _head(self, status: str, tasks: tuple[TaskEntry, ...], *, finished: bool) -> dict[str, Any]:
        return {
            "rhflow_version": __version__,
            "pipeline": self._graph.pipeline,
            "pipeline_hash": self._graph.pipeline_hash,
            "status": status,
            "started_at": iso(self._started) or "",
            "finished_at": iso(time.time()) if finished else None,
            "source": str(self._graph.source),
            "shard": self._shard,
            "server": self.server,
            "budget": None if self.budget is None else dict(self.budget),
            "counts": count_statuses(tasks),
            "cost": total_cost(tasks),
            "errors": tuple(self.errors),
        }

    def _text(self, manifest: Manifest) -> str:
        """``manifest`` as ``write_manifest`` writes it, from the entries' kept texts (the
        tasks come last in a manifest's JSON)."""
        head = json.dumps(manifest.head_dict(), indent=2, ensure_ascii=False, default=str)
        if not manifest.tasks:
            return head[: -len("\n}")] + ',\n  "tasks": []\n}\n'
        body = ",\n".join(self._texts[t.id] for t in manifest.tasks)
        return head[: -len("\n}")] + ',\n  "tasks": [\n' + body + "\n  ]\n}\n"

    def write(self, status: str = "running", *, finished: bool = False) -> Manifest | None:
        """Rewrite the manifest. After the final write (``finished``), progress writes still
        under way in other threads are dropped, so the final manifest is the last one."""
        with self._writing:
            if self._closed and not finished:
                return None
            started = time.perf_counter()
            manifest = self.build(status, finished=finished)
            write_atomic(self.path, self._text(manifest).encode("utf-8"))
            self._closed = self._closed or finished
            self.last_write = time.perf_counter() - started
            return manifest

    def finish(self, status: str) -> Manifest:
        """The final manifest of the run, written."""
        manifest = self.write(status, finished=True)
        assert manifest is not None
        return manifest


def _entry_text(entry: TaskEntry) -> str:
    """One task's entry as it stands inside the manifest's ``tasks`` list."""
    return "    " + indented(entry.to_dict(), "    ")


def run_status(counts: Mapping[str, int], *, interrupted: bool, errors: bool) -> str:
    """How a finished run ended, from its task counts."""
    if interrupted:
        return "interrupted"
    if errors or counts.get("succeeded", 0) != counts.get("total", 0):
        return "failed"
    return "succeeded"

"""``rhflow status``: look at a run from its output folder.

It reads the state store ``<DIR>/.rhflow/state.db`` that ``rhflow run`` keeps there, and the
manifest the run wrote (its path is remembered in the store). It needs no pipeline file;
:mod:`rhflow.commands.cancel` shares its way of opening the folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from rhflow.errors import StateError
from rhflow.record.journal import manifest_status, maybe_twice
from rhflow.record.manifest import Manifest, read_manifest
from rhflow.record.store import DB_NAME, REMOTE_ACTIVE, STATE_DIR, Store, TaskRecord


@dataclass(frozen=True, slots=True)
class Summary:
    """What ``rhflow status`` shows."""

    directory: str
    pipeline: str | None
    run_status: str | None
    started_at: str | None
    finished_at: str | None
    counts: dict[str, int]
    failed: list[dict[str, Any]]
    running: list[dict[str, Any]]
    manifest: str | None
    maybe_twice: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": self.directory,
            "pipeline": self.pipeline,
            "run_status": self.run_status,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "counts": self.counts,
            "failed": self.failed,
            "running": self.running,
            "maybe_twice": self.maybe_twice,
            "manifest": self.manifest,
        }


def open_store(directory: Path) -> Store:
    """The state store of an output folder, or a StateError that says what to pass."""
    path = directory / STATE_DIR / DB_NAME
    if not path.is_file():
        raise StateError(
            f"{directory} holds no rhflow run (no {STATE_DIR}/{DB_NAME}); pass the output "
            "folder of a run: the pipeline's `output`, or the --out given to rhflow run"
        )
    return Store(path)


def manifest_of(store: Store, directory: Path) -> tuple[Path | None, Manifest | None]:
    remembered = store.meta("manifest")
    path = Path(remembered) if remembered else directory / "manifest.json"
    if not path.is_file():
        return None, None
    try:
        return path, read_manifest(path)
    except StateError:
        return path, None


def summarize(directory: Path) -> Summary:
    """Counts, failures and remote tasks still running, for the last run in ``directory``."""
    with open_store(directory) as store:
        path, manifest = manifest_of(store, directory)
        records = store.tasks()
        pipeline = store.meta("pipeline")
        remote: dict[str, list[str]] = {}
        for remote_id, task_id in store.remote_ids().items():
            remote.setdefault(task_id, []).append(remote_id)
    if manifest is not None:
        records = {t.id: records[t.id] for t in manifest.tasks if t.id in records}
        pending = [t for t in manifest.tasks if t.id not in records]
    else:
        pending = []
    counts = {"total": len(records) + len(pending), "pending": len(pending)}
    for status in ("succeeded", "failed", "cancelled", "running"):
        counts.setdefault(status, 0)
    for record in records.values():
        shown = manifest_status(record)
        counts[shown] = counts.get(shown, 0) + 1
    return Summary(
        directory=str(directory),
        pipeline=manifest.pipeline if manifest else pipeline,
        run_status=manifest.status if manifest else None,
        started_at=manifest.started_at if manifest else None,
        finished_at=manifest.finished_at if manifest else None,
        counts=counts,
        failed=[_brief(r) for r in records.values() if manifest_status(r) == "failed"],
        running=[_brief(r) for r in records.values() if r.status in REMOTE_ACTIVE],
        manifest=None if path is None else str(path),
        maybe_twice=[
            {"id": r.id, "step": r.step, **twice}
            for r in records.values()
            if (twice := maybe_twice(r, remote.get(r.id, ()))) is not None
        ],
    )


def _brief(record: TaskRecord) -> dict[str, Any]:
    failure = record.failure or {}
    return {
        "id": record.id,
        "step": record.step,
        "task_id": record.remote_id,
        "status": record.status,
        "reason": failure.get("message"),
    }


def format_summary(summary: Summary) -> str:
    counts = summary.counts
    head = f"{summary.pipeline or 'run'} in {summary.directory}"
    if summary.run_status:
        head += f": {summary.run_status}"
        if summary.finished_at:
            head += f" (finished {summary.finished_at})"
        elif summary.started_at:
            head += f" (started {summary.started_at}, not finished)"
    shown = [
        f"{counts[k]} {k}"
        for k in ("succeeded", "failed", "cancelled", "running", "pending")
        if counts.get(k)
    ]
    lines = [head, f"tasks: {counts['total']} total" + (", " + ", ".join(shown) if shown else "")]
    for task in summary.failed:
        remote = f" (task {task['task_id']})" if task["task_id"] else ""
        lines.append(f"  failed {task['step']}/{task['id'][:10]}{remote}: {task['reason']}")
    for task in summary.running:
        lines.append(
            f"  {task['status']} remotely: {task['step']}/{task['id'][:10]} as task "
            f"{task['task_id']}"
        )
    for task in summary.maybe_twice:
        lines.append(f"  {task['step']}/{task['id'][:10]}: {task['reason']}")
    if summary.maybe_twice:
        lines.append(f"{len(summary.maybe_twice)} task(s) may have been created twice")
    if summary.manifest:
        lines.append(f"manifest: {summary.manifest}")
    return "\n".join(lines)


def status(directory: Path, *, as_json: bool) -> int:
    """Print the summary of the run in ``directory`` (as JSON with ``as_json``)."""
    summary = summarize(directory)
    click.echo(json.dumps(summary.to_dict(), indent=2) if as_json else format_summary(summary))
    return 0

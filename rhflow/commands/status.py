"""``rhflow status``: look at a run from its output folder.

It reads the state store ``<DIR>/.rhflow/state.db`` that ``rhflow run`` keeps there, and the
manifest the run wrote (its path is remembered in the store). It needs no pipeline file;
:mod:`rhflow.commands.cancel` shares its way of opening the folder.

Its exit code is for scripts: 0 when every task of the last run succeeded and its output files
are on disk as downloaded, 1 when one failed, 3 when some are unfinished (pending, running
remotely, or cancelled by an interrupt) or a succeeded task's files are missing or changed (the
next ``rhflow run`` fetches them again). ``status`` hashes every output file to say so: it
never calls a run whole from its records alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from rhflow.api.origins import origin_of
from rhflow.errors import StateError, UsageError
from rhflow.execute.folder import stale_outputs
from rhflow.execute.transfers import intact
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
    server: dict[str, Any] | None = None
    stale: list[dict[str, Any]] = field(default_factory=list)
    maybe_twice: list[dict[str, Any]] = field(default_factory=list)
    damaged: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 every task succeeded with its files intact, 1 some failed, 3 some are unfinished
        or have files missing or changed (see the module docstring)."""
        if self.counts.get("failed"):
            return 1
        if self.counts.get("succeeded", 0) != self.counts.get("total", 0) or self.damaged:
            return 3
        return 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": self.directory,
            "pipeline": self.pipeline,
            "run_status": self.run_status,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "server": self.server,
            "counts": self.counts,
            "failed": self.failed,
            "running": self.running,
            "stale": self.stale,
            "maybe_twice": self.maybe_twice,
            "damaged": self.damaged,
            "manifest": self.manifest,
            "exit_code": self.exit_code,
        }


def open_store(directory: Path) -> Store:
    """The state store of an output folder, or a UsageError (exit 2) that says what to pass."""
    path = directory / STATE_DIR / DB_NAME
    if not path.is_file():
        raise UsageError(
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
        everything = records = store.tasks()
        pipeline = store.meta("pipeline")
        remote: dict[str, list[str]] = {}
        for remote_id, task_id in store.remote_ids().items():
            remote.setdefault(task_id, []).append(remote_id)
    stale = []
    if manifest is not None:
        records = {t.id: records[t.id] for t in manifest.tasks if t.id in records}
        pending = [t for t in manifest.tasks if t.id not in records]
        stale = [
            {"id": item.task.id, "step": item.task.step, "path": str(item.path)}
            for item in stale_outputs(everything.values(), list(records))
        ]
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
        server=_server(manifest, records.values()),
        stale=stale,
        maybe_twice=[
            {"id": r.id, "step": r.step, **twice}
            for r in records.values()
            if (twice := maybe_twice(r, remote.get(r.id, ()))) is not None
        ],
        damaged=damaged_outputs(records.values()),
    )


def damaged_outputs(records: Iterable[TaskRecord]) -> list[dict[str, Any]]:
    """The output files of succeeded tasks that are gone or no longer hold what was
    downloaded (their sha256 is recorded): the run is not whole while they are."""
    found = []
    for record in records:
        if manifest_status(record) != "succeeded":
            continue
        for output in record.outputs:
            if output.path is None or intact(Path(output.path), output.sha256):
                continue
            problem = "changed" if Path(output.path).is_file() else "missing"
            found.append(
                {"id": record.id, "step": record.step, "path": output.path, "problem": problem}
            )
    return found


def _server(manifest: Manifest | None, records: Iterable[TaskRecord]) -> dict[str, Any] | None:
    """Whose results the folder holds: the manifest's ``server``, or the records' own."""
    if manifest is not None and manifest.server:
        return dict(manifest.server)
    for record in records:
        if record.server:
            return {"origin": origin_of(record.server), "emulated": record.emulated}
    return None


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
    lines = [head]
    if summary.server:
        emulated = " (an emulator)" if summary.server.get("emulated") else ""
        lines.append(f"server: {summary.server.get('origin')}{emulated}")
    lines.append(f"tasks: {counts['total']} total" + (", " + ", ".join(shown) if shown else ""))
    for task in summary.failed:
        remote = f" (task {task['task_id']})" if task["task_id"] else ""
        lines.append(f"  failed {task['step']}/{task['id'][:10]}{remote}: {task['reason']}")
    for task in summary.running:
        lines.append(
            f"  {task['status']} remotely: {task['step']}/{task['id'][:10]} as task "
            f"{task['task_id']}"
        )
    if summary.stale:
        lines.append(
            f"stale: {len(summary.stale)} file(s) of tasks no longer in the plan "
            "(rhflow run --prune removes them):"
        )
        lines.extend(
            f"  {item['step']}/{item['id'][:10]}: {item['path']}" for item in summary.stale
        )
    if summary.damaged:
        lines.append(
            f"damaged: {len(summary.damaged)} output file(s) of succeeded tasks are missing or "
            "changed (the next rhflow run downloads them again, or runs a task again whose "
            "outputs the server no longer has):"
        )
        lines.extend(
            f"  {item['problem']} {item['step']}/{item['id'][:10]}: {item['path']}"
            for item in summary.damaged
        )
    for task in summary.maybe_twice:
        lines.append(f"  {task['step']}/{task['id'][:10]}: {task['reason']}")
    if summary.maybe_twice:
        lines.append(f"{len(summary.maybe_twice)} task(s) may have been created twice")
    if summary.manifest:
        lines.append(f"manifest: {summary.manifest}")
    return "\n".join(lines)


def status(directory: Path, *, as_json: bool) -> int:
    """Print the summary of the run in ``directory`` (as JSON with ``as_json``); the exit code
    says how the run stands (:attr:`Summary.exit_code`)."""
    summary = summarize(directory)
    click.echo(json.dumps(summary.to_dict(), indent=2) if as_json else format_summary(summary))
    return summary.exit_code

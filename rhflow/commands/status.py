"""``rhflow status`` and ``rhflow cancel``: look at (or stop) a run from its output folder.

Both read the state store ``<DIR>/.rhflow/state.db`` that ``rhflow run`` keeps there, and the
manifest the run wrote (its path is remembered in the store). Neither needs the pipeline file.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rhflow.errors import ApiError, StateError
from rhflow.record.journal import manifest_status
from rhflow.record.lock import RunLock
from rhflow.record.manifest import Manifest, TaskEntry, read_manifest, write_manifest
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


def _manifest_of(store: Store, directory: Path) -> tuple[Path | None, Manifest | None]:
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
        path, manifest = _manifest_of(store, directory)
        records = store.tasks()
        pipeline = store.meta("pipeline")
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
    if summary.manifest:
        lines.append(f"manifest: {summary.manifest}")
    return "\n".join(lines)


def cancel_run(
    directory: Path,
    cancel: Callable[[str], None],
    *,
    report: Callable[[str], None] = print,
) -> tuple[list[str], list[str]]:
    """Cancel every remote task of the run in ``directory`` that may still be running.

    Returns (cancelled remote ids, error messages). The state store and the manifest are updated
    so that the next run submits the cancelled tasks again.
    """
    cancelled: list[str] = []
    problems: list[str] = []
    with _idle(directory), open_store(directory) as store:
        for record in store.tasks().values():
            if record.status not in REMOTE_ACTIVE or not record.remote_id:
                continue
            try:
                cancel(record.remote_id)
            except ApiError as err:
                problems.append(f"task {record.remote_id} ({record.step}/{record.id[:10]}): {err}")
                continue
            failure = {"kind": "cancelled", "message": "cancelled by rhflow cancel"}
            store.save(
                replace(record, status="cancelled", failure=failure, finished_at=time.time())
            )
            cancelled.append(record.remote_id)
            report(f"cancelled task {record.remote_id} ({record.step}/{record.id[:10]})")
        path, manifest = _manifest_of(store, directory)
    if manifest is not None and path is not None and cancelled:
        _mark_cancelled(path, manifest, set(cancelled))
    return cancelled, problems


@contextmanager
def _idle(directory: Path) -> Iterator[None]:
    """Hold the run lock of ``directory``, or raise a StateError saying how to stop the run
    holding it: a run that is still going would see its tasks fail and submit them again,
    while stopping it (Ctrl-C or SIGTERM) cancels its remote tasks itself."""
    lock = RunLock(directory)
    try:
        lock.acquire()
    except StateError as err:
        raise StateError(
            f"{err}. rhflow cancel is for runs that were detached or killed; to stop a run that "
            "is still going, press Ctrl-C in it or send it SIGTERM (kill <pid>), which cancels "
            "its remote tasks"
        ) from err
    try:
        yield
    finally:
        lock.release()


def _mark_cancelled(path: Path, manifest: Manifest, remote_ids: set[str]) -> None:
    tasks: list[TaskEntry] = []
    for task in manifest.tasks:
        if task.task_id in remote_ids and task.status in ("running", "pending"):
            task = replace(task, status="cancelled", failure="cancelled by rhflow cancel")
        tasks.append(task)
    from rhflow.record.manifest import count_statuses

    entries = tuple(tasks)
    write_manifest(path, replace(manifest, tasks=entries, counts=count_statuses(entries)))


def cancel_with_key(
    directory: Path,
    *,
    api_key: str | None,
    base_url: str | None,
    report: Callable[[str], None] = print,
) -> int:
    """``rhflow cancel``: cancel with a client built from the key; the exit code."""
    from rhflow.api.client import Client

    with open_store(directory) as store:
        servers = [r.server for r in store.tasks().values() if r.status in REMOTE_ACTIVE]
    if not servers:
        report(f"nothing of the run in {directory} is running remotely")
        return 0
    with Client.from_env(api_key=api_key, base_url=base_url or servers[0]) as client:
        cancelled, problems = cancel_run(directory, client.cancel, report=report)
    for problem in problems:
        report(f"could not cancel {problem}")
    report(f"cancelled {len(cancelled)} task(s)")
    return 1 if problems else 0

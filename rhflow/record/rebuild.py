"""Opening an output folder's state for a run, rebuilt from ``manifest.json`` when damaged.

The state store is the record a run trusts; ``manifest.json`` beside it is a view of it that
also names each task's remote id and its outputs with sha256. When the store cannot be read (a
file that is not a database, another program's schema, a value that does not decode), or is
empty while the manifest records tasks (deleted, truncated to 0 bytes), :func:`open_state`
moves the damaged file aside, rebuilds a store from the manifest and says so. A task the
manifest records as succeeded with intact outputs is then done, not created again; one that was
downloading is downloaded; one that may still run remotely is followed.

When nothing can be rebuilt (no readable manifest) or the store cannot be used at all (a newer
rhflow's, an unwritable folder), the run stops before anything is sent
(``StateUnusableError``, exit 2), with the way out in the message.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rhflow.errors import DamagedStateError, StateError
from rhflow.record.manifest import Manifest, TaskEntry, read_manifest
from rhflow.record.store import DB_NAME, STATE_DIR, OutputRecord, Store, TaskRecord, unusable

#: Failure kinds after which the remote task has ended for sure; any other failure of a task
#: with a remote id (a check that failed, a local error) may have left it running.
_ENDED = frozenset({"failed", "timeout", "lost", "upstream", "cancelled"})
REBUILT_NOTE = "state rebuilt from manifest.json"


@dataclass(frozen=True, slots=True)
class Opened:
    """The store of a run, and what was done to get it (None when it opened as it was)."""

    store: Store
    message: str | None = None


def open_state(output_dir: Path, manifest_path: Path) -> Opened:
    """The state store of ``output_dir``, rebuilt from ``manifest_path`` when it is damaged
    or empty while the manifest records tasks."""
    db = output_dir / STATE_DIR / DB_NAME
    try:
        store = _checked(db)
    except DamagedStateError as err:
        return _rebuild_damaged(db, manifest_path, err)
    if store.tasks():
        return Opened(store)
    manifest = _usable(manifest_path)
    if manifest is None or not any(t.task_id for t in manifest.tasks):
        return Opened(store)
    count = rebuild(store, manifest, manifest_path.parent)
    return Opened(
        store,
        f"the state store {db} was empty or missing; rebuilt {count} task(s) from {manifest_path}",
    )


def _checked(db: Path) -> Store:
    store = Store(db)
    try:
        store.check()
    except DamagedStateError:
        store.close()
        raise
    return store


def _rebuild_damaged(db: Path, manifest_path: Path, err: DamagedStateError) -> Opened:
    manifest = _usable(manifest_path)
    if manifest is None:
        raise DamagedStateError(
            f"{err}; there is no readable {manifest_path} to rebuild it from, so nothing was "
            f"sent. To start afresh, move it aside (mv {db} {db}.damaged) and run again: tasks "
            "it recorded may then be created (and paid for) again",
            reason=err.reason,
        ) from err
    moved = _move_aside(db)
    store = Store(db)
    count = rebuild(store, manifest, manifest_path.parent)
    return Opened(
        store,
        f"the state store could not be read ({err.reason}); moved it to {moved} and rebuilt "
        f"{count} task(s) from {manifest_path}",
    )


def _usable(path: Path) -> Manifest | None:
    try:
        return read_manifest(path) if path.is_file() else None
    except StateError:
        return None


def _move_aside(db: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = db.with_name(f"{db.name}.damaged-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        part = db.with_name(db.name + suffix)
        if part.exists():
            try:
                os.replace(part, target.with_name(target.name + suffix))
            except OSError as exc:  # a read-only folder: say so, not a traceback
                raise unusable(db.parent, exc) from exc
    return target


def rebuild(store: Store, manifest: Manifest, base: Path) -> int:
    """Write a record for each task of ``manifest`` that reached the server; return how many."""
    records = [record_of(t, base) for t in manifest.tasks if t.task_id]
    store.save_many(records)
    store.set_meta("pipeline", manifest.pipeline)
    return len(records)


def record_of(entry: TaskEntry, base: Path) -> TaskRecord:
    """The store record a manifest entry stands for (output paths made absolute)."""
    outputs = tuple(
        OutputRecord(
            o.index,
            o.node_id,
            o.url,
            o.file_type,
            None if o.path is None else str((base / o.path).resolve()),
            o.sha256,
            o.bytes,
        )
        for o in entry.outputs
    )
    twice = entry.maybe_twice or {}
    return TaskRecord(
        id=entry.id,
        step=entry.step,
        status=_status(entry),
        remote_id=entry.task_id,
        server=entry.server,
        emulated=entry.emulated,
        attempts=entry.attempts,
        params=dict(entry.params),
        node_info_list=None if entry.node_info_list is None else tuple(entry.node_info_list),
        submitted_at=_epoch(entry.submitted_at),
        finished_at=_epoch(entry.finished_at),
        cost_time=entry.cost_time,
        coins=entry.coins,
        money=entry.money,
        currency=entry.currency,
        failure=None if entry.failure_detail is None else dict(entry.failure_detail),
        notes=(*entry.notes, REBUILT_NOTE),
        outputs=outputs,
        unanswered=int(twice.get("unanswered", 0) or 0),
        key=entry.key,
    )


def _status(entry: TaskEntry) -> str:
    """The store status to resume from: never one that would create a paid task again when
    the manifest shows it may still run or has outputs to fetch."""
    kind = (entry.failure_detail or {}).get("kind")
    if entry.status in ("succeeded", "cancelled"):
        return entry.status
    if entry.status == "running":
        return "running"
    links = bool(entry.outputs) and all(o.url for o in entry.outputs)
    if entry.status == "failed" and (kind == "download" or (kind == "interrupted" and links)):
        return "downloading"
    if entry.status == "failed" and kind not in _ENDED:
        return "running"  # only a check or a local step failed: look at the task again
    return "failed"


def _epoch(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None

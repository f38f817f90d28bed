"""What to do with each planned task, given what the state store remembers of earlier runs.

``decide`` is the whole resume policy, without I/O other than checking output files:

- no record, or ``--force``: run it (``fresh``); with ``--force``, a remote task an earlier run
  left queued or running is named in ``supersedes`` so that it is cancelled, not paid twice
  (on another server than this run's it cannot be: a note says where it may still run);
- succeeded and every file present with its recorded sha256: nothing (``done``);
- succeeded but a file is missing or changed, or interrupted while downloading: download
  again without running it (``collect``);
- submitted earlier and possibly still queued or running remotely: follow it, never create it
  again (``follow``);
- failed, cancelled or never submitted: run it (``fresh``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from rhflow.execute.folder import same_server
from rhflow.execute.transfers import intact
from rhflow.model import PlannedTask
from rhflow.record.store import ACTIVE, REMOTE_ACTIVE, TaskRecord

LEFT_ELSEWHERE = (
    "--force: remote task {remote_id} of an earlier run on {server} may still be running "
    "there (and billing); cancel it with: rhflow cancel --base-url {server}"
)
ADOPTED_NOTE = (
    "recorded as task {old} before rhflow.lock gave its workflow's hash; which version of the "
    "workflow it ran is not known"
)
REDOWNLOAD_NOTE = "files missing or changed since the last run; downloading them again"
KILLED_NOTE = (
    "an earlier run stopped while a create request was in the air (killed before its answer "
    "was recorded); RunningHub may have made the task under an id rhflow cannot learn: if the "
    "task is created again, it may have been created twice"
)


@dataclass(frozen=True, slots=True)
class Decision:
    """``mode`` (fresh, done, collect, follow), the record to start from, and whether that
    record must be written back before the run starts."""

    mode: str
    record: TaskRecord
    changed: bool
    supersedes: str | None = None  # with --force: a remote task of an earlier run to cancel


def decide(
    task: PlannedTask, record: TaskRecord | None, *, force: bool, server: str | None = None
) -> Decision:
    if record is not None and record.sending is not None:
        record = replace(
            record,
            sending=None,
            unanswered=record.unanswered + 1,
            notes=(*record.notes, KILLED_NOTE),
        )
        decision = _decide(task, record, force=force, server=server)
        return replace(decision, changed=True)
    return _decide(task, record, force=force, server=server)


def _decide(
    task: PlannedTask, record: TaskRecord | None, *, force: bool, server: str | None
) -> Decision:
    if record is None or force:
        fresh = TaskRecord(task.id, task.step, "pending", params=dict(task.params))
        attempts = 0 if record is None else record.attempts
        stale = record.remote_id if record and record.status in REMOTE_ACTIVE else None
        notes: tuple[str, ...] = ()
        if stale and record and server is not None and not same_server(record.server, server):
            notes = (LEFT_ELSEWHERE.format(remote_id=stale, server=record.server),)
            stale = None  # its server is not this run's: a cancel sent here would miss it
        unanswered = 0 if record is None else record.unanswered
        if unanswered and record is not None:
            notes = (*record.notes, *notes)  # keep why it may have been created twice
        fresh = replace(fresh, attempts=attempts, notes=notes, unanswered=unanswered)
        return Decision("fresh", fresh, True, supersedes=stale)
    if record.status == "succeeded" and outputs_intact(record):
        return Decision("done", record, False)
    if record.status == "succeeded":
        notes = (*record.notes, REDOWNLOAD_NOTE)
        return Decision("collect", replace(record, status="downloading", notes=notes), True)
    if record.status == "downloading" and record.remote_id:
        return Decision("collect", replace(record, failure=None), True)
    if record.status in ACTIVE and record.remote_id:
        return Decision("follow", record, False)
    return Decision("fresh", replace(record, status="pending", failure=None), True)


def outputs_intact(record: TaskRecord) -> bool:
    """Every output of the record is on disk with its recorded content."""
    return all(o.path is not None and intact(Path(o.path), o.sha256) for o in record.outputs)


def adopt_earlier_ids(
    tasks: Iterable[PlannedTask], records: Mapping[str, TaskRecord]
) -> list[tuple[str, TaskRecord]]:
    """``(old id, record under the task's id)`` for each planned task with no record of its
    own but one under ``legacy_id``: the id it had before its workflow's hash was known.
    Such a record was made before the lock (rhflow could not tell the workflow's version
    then, as it cannot now); a record made since has the hash in its id."""
    adopted = []
    for task in tasks:
        old = records.get(task.legacy_id) if task.legacy_id else None
        if old is None or task.id in records:
            continue
        note = ADOPTED_NOTE.format(old=old.id)
        adopted.append((old.id, replace(old, id=task.id, notes=(*old.notes, note))))
    return adopted

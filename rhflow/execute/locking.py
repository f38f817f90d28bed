"""The workflows a run is about to use, against ``rhflow.lock``, before anything is sent.

``check_lock`` fetches each locked workflow (``getJsonApiFormat``) and AI app (``apiCallDemo``)
once, compares it with the lock and returns the content hashes the task ids are made with: the
server's current ones, so a workflow changed behind its id means new tasks, never a stale skip.
A difference is a warning naming the nodes and fields that changed; with ``frozen`` every
difference (and a missing lock or entry, or a workflow that cannot be fetched) is a LockError
(exit 2) and nothing is sent. ``update_lock`` is ``rhflow lock``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rhflow.api.origins import origin_of
from rhflow.errors import ApiError, LockError
from rhflow.model import Pipeline
from rhflow.pipeline.lockfile import (
    Key,
    Lock,
    LockEntry,
    changes,
    fetch_entry,
    label,
    lock_keys,
    lock_path,
    read_lock,
    write_lock,
)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class LockCheck:
    """The content hash to plan each target with, and what differed from the lock."""

    hashes: dict[Key, str]
    warnings: tuple[str, ...]


def check_lock(
    pipeline: Pipeline,
    client: Any,
    *,
    server: str,
    frozen: bool = False,
    now: Callable[[], str] = utc_now,
) -> LockCheck:
    """Compare the pipeline's workflows with its lock; see the module docstring."""
    path = lock_path(pipeline.source)
    lock = read_lock(path)
    if lock is None:
        if frozen:
            raise LockError(
                f"--frozen: there is no {path}; write it with: rhflow lock {pipeline.source}"
            )
        return LockCheck({}, ())  # no lock: ids stay as they always were
    hashes: dict[Key, str] = {}
    problems: list[str] = []
    for key in lock_keys(pipeline):
        entry = lock.entries.get(key)
        try:
            current = fetch_entry(client, key, server=origin_of(server), now=now())
        except ApiError as err:
            problems.append(f"{label(key)} could not be fetched to compare with {path}: {err}")
            if entry is not None:
                hashes[key] = entry.sha256
            continue
        hashes[key] = current.sha256
        problem = _difference(path, entry, current, server, then=_NEW_TASKS)
        if problem:
            problems.append(problem)
    if frozen and problems:
        raise LockError(
            "--frozen: "
            + "\n  ".join(problems)
            + f"\nnothing was submitted; accept the change with: rhflow lock --update "
            f"{pipeline.source}"
        )
    return LockCheck(hashes, tuple(problems))


_NEW_TASKS = "; its tasks get new ids and run again"


def _difference(
    path: Path, entry: LockEntry | None, current: LockEntry, server: str, *, then: str = ""
) -> str:
    key = (current.kind, current.id)
    if entry is None:
        return f"{label(key)} is not in {path}; add it with: rhflow lock"
    if origin_of(entry.server) != origin_of(server):
        return (
            f"{path} holds {label(key)} as {entry.server} has it, not {origin_of(server)}: "
            "not compared"
        )
    if entry.sha256 == current.sha256:
        return ""
    return (
        f"{label(key)} changed on the server since {path} was written "
        f"({entry.fetched_at}): {'; '.join(changes(entry, current))}{then}"
    )


@dataclass(frozen=True, slots=True)
class LockUpdate:
    """What ``rhflow lock`` did: the lock written, and a line per entry."""

    lock: Lock
    lines: tuple[str, ...]


def update_lock(
    pipelines: Iterable[Pipeline],
    client: Any,
    *,
    server: str,
    update: bool = False,
    now: Callable[[], str] = utc_now,
) -> LockUpdate:
    """Write ``rhflow.lock`` beside the pipelines (one folder): add what is missing; with
    ``update`` fetch every entry again. Entries already there stay as they are otherwise (a
    change on the server is reported, not taken), so the file changes only when asked."""
    pipelines = list(pipelines)
    folders = {lock_path(p.source).resolve() for p in pipelines}
    if len(folders) != 1:
        raise LockError("rhflow lock: give pipeline files of one folder (each folder has a lock)")
    path = lock_path(pipelines[0].source)
    try:
        lock = read_lock(path)
    except LockError:
        if not update:
            raise
        lock = None  # --update writes an unreadable lock anew
    entries = dict(lock.entries) if lock is not None else {}
    lines = []
    for key in dict.fromkeys(k for p in pipelines for k in lock_keys(p)):
        try:
            current = fetch_entry(client, key, server=origin_of(server), now=now())
        except ApiError as err:
            raise LockError(f"{label(key)} could not be fetched: {err}; nothing written") from err
        old = entries.get(key)
        if old is None or update:
            entries[key] = current
            state = "locked" if old is None or old.sha256 != current.sha256 else "unchanged"
            lines.append(f"{label(key)}: {state} sha256:{current.sha256[:16]}")
        elif old.sha256 != current.sha256:
            problem = _difference(path, old, current, server)
            lines.append(
                f"{problem}; kept sha256:{old.sha256[:16]} (take the change with --update)"
            )
        else:
            lines.append(f"{label(key)}: unchanged sha256:{old.sha256[:16]}")
    written = Lock(path, dict(sorted(entries.items())))
    write_lock(written)
    return LockUpdate(written, tuple(lines))

"""``rhflow cancel``: cancel the remote tasks a detached or killed run left running."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from rhflow.api.client import BUILTIN_EMULATOR, NO_KEY_MESSAGE, Client, split_keys
from rhflow.commands.status import manifest_of, open_store
from rhflow.errors import ApiError, StateError, UsageError
from rhflow.record.lock import RunLock
from rhflow.record.manifest import Manifest, TaskEntry, count_statuses, write_manifest
from rhflow.record.store import REMOTE_ACTIVE


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
        path, manifest = manifest_of(store, directory)
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
    with open_store(directory) as store:
        live = [r for r in store.tasks().values() if r.status in REMOTE_ACTIVE]
    servers = [r.server for r in live]
    made_with = {r.remote_id: r.key for r in live if r.remote_id}
    if not servers:
        report(f"nothing of the run in {directory} is running remotely")
        return 0
    if servers[0] == BUILTIN_EMULATOR:
        report(
            f"the tasks of {directory} ran on the built-in emulator of --emulator, which "
            "ended with its run; nothing is running"
        )
        return 0
    keys = split_keys(api_key or os.environ.get("RH_API_KEY"))
    if not keys:
        raise UsageError(NO_KEY_MESSAGE)
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(Client(key, base_url or servers[0])) for key in keys]
        by_key = {client.fingerprint: client for client in clients}

        def cancel(remote_id: str) -> None:
            """With the key that created the task (of the keys given)."""
            made = made_with.get(remote_id)
            if made is not None and made not in by_key:
                raise ApiError(
                    f"it was created with API key {made}, which is not among the keys given "
                    "(RH_API_KEY may hold several, separated by commas)"
                )
            by_key.get(made or "", clients[0]).cancel(remote_id)

        cancelled, problems = cancel_run(directory, cancel, report=report)
    for problem in problems:
        report(f"could not cancel {problem}")
    report(f"cancelled {len(cancelled)} task(s)")
    return 1 if problems else 0

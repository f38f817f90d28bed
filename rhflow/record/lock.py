"""The run lock: one ``rhflow run`` at a time per output folder.

``RunLock`` holds an OS advisory lock on ``<output>/.rhflow/lock`` for the length of a run. The
kernel releases it when the process ends, however it ends, so a run killed with ``kill -9``
never blocks the next one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TextIO

from rhflow.errors import StateError, StateUnusableError
from rhflow.record.store import STATE_DIR, unusable

LOCK_NAME = "lock"


class RunLock:
    """An exclusive advisory lock on ``<output>/.rhflow/lock`` for the length of a run.

    The kernel drops the lock when the holding process exits, however it exits, so a stale lock
    file left by a killed run never blocks the next one.
    """

    def __init__(self, output_dir: Path) -> None:
        self.path = output_dir / STATE_DIR / LOCK_NAME
        self._file: TextIO | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release
        except IsADirectoryError as exc:
            raise StateUnusableError(
                f"{self.path} is a folder, not rhflow's lock file; remove it "
                f"(rmdir {self.path}) and run again"
            ) from exc
        except OSError as exc:
            raise unusable(self.path.parent, exc) from exc
        if not _try_lock(handle):
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise StateError(
                f"another rhflow run ({holder}) is using {self.path.parent.parent}; wait for it "
                "to finish, stop it, or pass a different --out"
            )
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}")
            handle.flush()
        except OSError:
            pass  # the lock is held; the pid is only a courtesy to the next one
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor drops the lock
            self._file = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _try_lock(handle: TextIO) -> bool:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        import msvcrt

        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True

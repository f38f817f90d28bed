"""Files replaced atomically: a reader sees the old content or the new, never half of either.

The bytes go to a temporary file in the target's folder (same file system, so the rename is
atomic), are flushed and fsynced, then renamed over the target. On any failure the temporary
file is removed. The new file gets the usual mode (0666 less the umask), not the 0600 of
``mkstemp``, so outputs and manifests can be shared like any other file.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


@contextmanager
def replacing(path: Path) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` when the block ends without an exception."""
    _check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_replaceable(path: Path) -> None:
    """OSError unless ``path`` is missing or a regular file (a link to one is fine)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    except OSError:
        return  # the write itself reports what is wrong with the place
    if not stat.S_ISREG(mode):
        raise NotAFileError(errno.EEXIST, "not a regular file", str(path))


class NotAFileError(OSError):
    """The target exists and is a device, a pipe, a socket or a folder."""


def cannot_write(path: Path, exc: OSError) -> str:
    """The user's message for a failed write of ``path``: what, why and what to do."""
    if isinstance(exc, NotAFileError):
        return f"cannot write {path}: it is a device, a pipe or a folder; name a file instead"
    return f"cannot write {path}: {exc}; check the folder is writable"


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically; OSError propagates to the caller."""
    with replacing(path) as handle:
        handle.write(data)

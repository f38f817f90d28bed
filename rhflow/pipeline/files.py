"""Reading the files a pipeline names: regular files only, each read with a size cap.

A pipeline file can name any path (``workflow_file: /dev/zero``, ``{file: a-fifo}``); reading
such a path would never end or would block until a writer appears. Each file is opened without
blocking, refused unless it is a regular file, and read no further than its cap.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

MiB = 1024 * 1024
#: Largest pipeline file.
MAX_PIPELINE = 8 * MiB
#: Largest ``workflow_file`` or ``rows`` file.
MAX_DATA = 64 * MiB
#: Largest ``{file: ...}`` input: RunningHub refuses uploads over 30 MB.
MAX_INPUT = 30 * MiB

_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}


class NotRegularError(OSError):
    """The path is not a regular file; ``strerror`` says what it is."""


class TooLargeError(OSError):
    """The file is larger than its cap; ``strerror`` says by how much."""


def read_capped(path: Path, cap: int) -> bytes:
    """The bytes of the regular file at ``path``; NotRegularError or TooLargeError otherwise
    (both OSError, with a sentence in ``strerror``), or the OSError of opening it."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
            if stat.S_ISDIR(info.st_mode):
                raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
            raise NotRegularError(errno.EINVAL, f"it is {kind}, not a regular file", str(path))
        if info.st_size > cap:
            raise TooLargeError(errno.EFBIG, _too_large(info.st_size, cap), str(path))
        chunks = []
        size = 0
        while chunk := os.read(fd, min(cap + 1 - size, MiB) or 1):
            chunks.append(chunk)
            size += len(chunk)
            if size > cap:  # it grew while being read
                raise TooLargeError(errno.EFBIG, _too_large(size, cap), str(path))
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text(path: Path, cap: int) -> str:
    """The UTF-8 text of a regular file (newlines as ``\\n``, like ``Path.read_text``);
    UnicodeDecodeError if it is not UTF-8."""
    return read_capped(path, cap).decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")


def _too_large(size: int, cap: int) -> str:
    return f"it is {_mb(size)}, more than the {_mb(cap)} allowed"


def _mb(size: int) -> str:
    return f"{size / MiB:.1f} MB" if size >= MiB else f"{size:,} bytes"

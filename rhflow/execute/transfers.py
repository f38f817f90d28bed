"""Files in and out of a run: uploads once per content hash, and downloads placed safely.

- ``UploadCache``: uploaded names by (server, sha256), kept in the state store so a file is sent
  once across runs; thread-safe, because the planner renders ``needs.<step>.outputs[i]`` in a
  worker thread and indexing those outputs uploads them.
- ``UpstreamView``: what a downstream task may read of a finished upstream task.
- ``safe_destination``: a relative name -> a path inside the output folder, or an error;
  ``safe_part``: a server-given word (a nodeId) reduced to a harmless part of a file name.
- ``check_file``: the header check run on each download before it is renamed into place.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

from rhflow.atomic import replacing
from rhflow.errors import ApiError, PlanError, TransportError
from rhflow.execute.scheduling import Backoff, Rand
from rhflow.record.store import Store

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_MAGIC = {"png": (PNG_MAGIC,), "jpg": (b"\xff\xd8\xff",), "jpeg": (b"\xff\xd8\xff",)}


class UploadCache:
    """``name_for(path, sha256)``: the uploaded name of a file's content, uploading it at most
    once per server. Blocking: call it from a worker thread."""

    def __init__(
        self,
        upload: Callable[[Path], str],
        store: Store,
        server: str,
        *,
        backoff: Backoff,
        retries: int,
        rand: Rand,
        sleep: Callable[[float], None] = time.sleep,
        on_upload: Callable[[Path, str, str], None] | None = None,
        give_up: Callable[[], bool] = lambda: False,
    ) -> None:
        self._upload = upload
        self._store = store
        self._server = server
        self._backoff = backoff
        self._retries = retries
        self._rand = rand
        self._sleep = sleep
        self._on_upload = on_upload
        self._give_up = give_up  # no more retries (the server stopped answering)
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def name_for(self, path: Path, sha256: str | None = None) -> str:
        digest = sha256 or file_sha256(path)
        with self._guard:
            lock = self._locks.setdefault(digest, threading.Lock())
        with lock:
            known = self._store.upload_name(self._server, digest)
            if known is not None:
                return known
            name = self._upload_with_retries(path)
            self._store.remember_upload(self._server, digest, name)
            if self._on_upload is not None:
                self._on_upload(path, digest, name)
            return name

    def _upload_with_retries(self, path: Path) -> str:
        for attempt in range(self._retries + 1):
            try:
                return self._upload(path)
            except ApiError as err:
                if not err.retryable or attempt == self._retries or self._give_up():
                    raise
                # A short pause inside the pool thread doing this one upload.
                self._sleep(self._backoff.delay(attempt, self._rand))
        raise AssertionError("unreachable")  # pragma: no cover


class LazyUploads(Sequence[str]):
    """Uploaded names of an upstream task's files, given as (path, recorded sha256); a file is
    uploaded when first indexed, and the recorded hash spares reading it again."""

    def __init__(self, files: Sequence[tuple[Path, str | None]], cache: UploadCache) -> None:
        self._files = tuple(files)
        self._cache = cache

    def __len__(self) -> int:
        return len(self._files)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...

    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            return [self._cache.name_for(*f) for f in self._files[index]]
        return self._cache.name_for(*self._files[index])

    def __iter__(self) -> Iterator[str]:
        return (self._cache.name_for(*f) for f in self._files)


@dataclass(frozen=True, slots=True)
class UpstreamView:
    """What ``needs.<step>`` means in a downstream template."""

    outputs: Sequence[str]
    urls: tuple[str, ...]
    files: tuple[Path, ...]
    params: Mapping[str, Any]
    task_id: str | None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def safe_destination(output_dir: Path, name: str, *, resolved: bool = False) -> Path:
    """``output_dir / name``, resolved, refusing anything that lands outside ``output_dir``
    (``resolved``: ``output_dir`` is resolved already)."""
    root = output_dir if resolved else output_dir.resolve()
    target = (root / name).resolve()
    if target == root or not target.is_relative_to(root):
        raise PlanError(
            f"output name {name!r} would be written outside the output folder {root}; "
            "fix the step's outputs template"
        )
    return target


_UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]+")


def safe_part(text: str, limit: int = 64) -> str:
    """``text`` as one harmless part of a file name: runs of anything but letters, digits,
    ``_ . : -`` become ``_`` (no ``/``, NUL or ``..`` survives), no leading dot, at most
    ``limit`` characters."""
    return _UNSAFE.sub("_", text).lstrip(".")[:limit].replace("..", "_")


def check_file(path: Path, file_type: str | None, expected_bytes: int) -> None:
    """A downloaded file has the announced size and, for PNG/JPEG, the right header."""
    size = path.stat().st_size
    if size != expected_bytes:
        raise TransportError(f"download of {path.name} has {size} bytes, expected {expected_bytes}")
    magics = _MAGIC.get((file_type or "").lower())
    if magics is None:
        return
    with open(path, "rb") as handle:
        head = handle.read(8)
    if not any(head.startswith(m) for m in magics):
        raise TransportError(
            f"download of {path.name} is not a valid {file_type} file (bad header)"
        )


def place(staged: Path, dest: Path) -> None:
    """Rename a checked file into place and make the rename durable. A destination on
    another file system than the staging folder gets a copy, replaced atomically there."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(staged, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        with open(staged, "rb") as source, replacing(dest) as target:
            shutil.copyfileobj(source, target, 1 << 20)
        staged.unlink()
    try:
        fd = os.open(dest.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def intact(path: Path, sha256: str | None) -> bool:
    """The file exists and has the recorded content."""
    if sha256 is None or not path.is_file():
        return False
    return file_sha256(path) == sha256

"""A content-addressed store of finished tasks shared across runs and machines (``--cache URL``).

Task ids are content hashes of what a task sends, so a finished task can be kept by its id and
taken by any run that plans the same task, instead of paying for it again. The cache is a
plain folder (a network share, a folder CI keeps with its cache action) or, through fsspec (an
optional dependency: ``pip install 'rhflow[cloud]'``), any fsspec URL: ``s3://``, ``gs://``,
``memory://``, ``file://``. This is the only module that imports fsspec.

Layout, one folder per server (results belong to the server that made them)::

    ROOT/rhflow-cache-v1/<server origin, slugged>/<task id>/entry.json
    ROOT/rhflow-cache-v1/<server origin, slugged>/<task id>/<index>.<ext>

Every file is written under a temporary name and renamed; ``entry.json`` is written last, so an
entry whose files are not all there is not seen. Reading checks each file's sha256 and size
against ``entry.json`` while copying it out: an entry that does not match raises CacheError,
to be ignored with a warning, never trusted. Nothing here holds the API key.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from rhflow.atomic import write_atomic
from rhflow.errors import CacheError, UsageError

CACHE_VERSION = 1
PREFIX = f"rhflow-cache-v{CACHE_VERSION}"
ENTRY = "entry.json"
_CHUNK = 1 << 20
_TASK_ID = re.compile(r"^[0-9a-f]{8,64}$")


@dataclass(frozen=True, slots=True)
class CachedOutput:
    """One output file of a cached task, stored as ``<index>.<ext>``."""

    index: int
    node_id: str | None
    url: str | None
    file_type: str | None
    sha256: str
    bytes: int

    @property
    def name(self) -> str:
        return f"{self.index}.{_ext(self.file_type)}"


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """A finished task as the cache keeps it: its record and its outputs."""

    task: str
    step: str
    server: str  # the origin of the server that ran it
    emulated: bool
    remote_id: str | None
    params: Mapping[str, Any]
    node_info_list: tuple[Mapping[str, Any], ...] | None
    cost_time: float | None
    coins: float | None
    finished_at: float | None
    outputs: tuple[CachedOutput, ...]
    money: float | None = None  # what an enterprise key paid, and in what currency
    currency: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "cache_version": CACHE_VERSION,
            "task": self.task,
            "step": self.step,
            "server": self.server,
            "emulated": self.emulated,
            "remote_id": self.remote_id,
            "params": dict(self.params),
            "node_info_list": None
            if self.node_info_list is None
            else [dict(e) for e in self.node_info_list],
            "cost_time": self.cost_time,
            "coins": self.coins,
            "money": self.money,
            "currency": self.currency,
            "finished_at": self.finished_at,
            "outputs": [
                {
                    "index": o.index,
                    "node_id": o.node_id,
                    "url": o.url,
                    "file_type": o.file_type,
                    "sha256": o.sha256,
                    "bytes": o.bytes,
                }
                for o in self.outputs
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CacheEntry:
        if data.get("cache_version") != CACHE_VERSION:
            raise ValueError(f"cache_version {data.get('cache_version')!r}")
        outputs = tuple(
            CachedOutput(
                int(o["index"]),
                o.get("node_id"),
                o.get("url"),
                o.get("file_type"),
                _sha(o["sha256"]),
                int(o["bytes"]),
            )
            for o in data["outputs"]
        )
        if not outputs:
            raise ValueError("no outputs")
        nil = data.get("node_info_list")
        return cls(
            task=str(data["task"]),
            step=str(data["step"]),
            server=str(data["server"]),
            emulated=bool(data.get("emulated", False)),
            remote_id=data.get("remote_id"),
            params=dict(data.get("params") or {}),
            node_info_list=None if nil is None else tuple(dict(e) for e in nil),
            cost_time=data.get("cost_time"),
            coins=data.get("coins"),
            finished_at=data.get("finished_at"),
            outputs=outputs,
            money=_money(data.get("money")),
            currency=str(data["currency"])[:16] if data.get("currency") else None,
        )


def _sha(value: Any) -> str:
    text = str(value)
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise ValueError(f"sha256 {text!r}")
    return text


def _ext(file_type: str | None) -> str:
    ext = re.sub(r"[^a-z0-9]", "", (file_type or "bin").lower())[:10]
    return ext or "bin"


def server_folder(server: str) -> str:
    """A folder name for a server's origin: ``https_www.runninghub.cn_443``."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", server).strip("_") or "server"


class _Backend(Protocol):
    def read(self, rel: str) -> bytes | None: ...

    def open(self, rel: str) -> IO[bytes]: ...

    def put_file(self, src: Path, rel: str) -> None: ...

    def put_bytes(self, data: bytes, rel: str) -> None: ...


class _Folder:
    """A plain folder (local or a mounted share); renames are atomic within it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def read(self, rel: str) -> bytes | None:
        try:
            return (self.root / rel).read_bytes()
        except FileNotFoundError:
            return None

    def open(self, rel: str) -> IO[bytes]:
        return (self.root / rel).open("rb")

    def put_file(self, src: Path, rel: str) -> None:
        dest = self.root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        temp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
        try:
            with src.open("rb") as read, temp.open("wb") as out:
                shutil.copyfileobj(read, out, _CHUNK)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, dest)
        finally:
            temp.unlink(missing_ok=True)

    def put_bytes(self, data: bytes, rel: str) -> None:
        write_atomic(self.root / rel, data)


class _Fsspec:
    """Any fsspec file system: written under a temporary name, then moved into place."""

    def __init__(self, fs: Any, root: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/")

    def _path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def read(self, rel: str) -> bytes | None:
        try:
            return bytes(self.fs.cat_file(self._path(rel)))
        except FileNotFoundError:
            return None

    def open(self, rel: str) -> IO[bytes]:
        handle: IO[bytes] = self.fs.open(self._path(rel), "rb")
        return handle

    def _temp(self, rel: str) -> str:
        folder, _, name = self._path(rel).rpartition("/")
        return f"{folder}/.{name}.{uuid.uuid4().hex}.part"

    def put_file(self, src: Path, rel: str) -> None:
        temp = self._temp(rel)
        self.fs.makedirs(temp.rpartition("/")[0], exist_ok=True)
        self.fs.put_file(str(src), temp)
        self.fs.mv(temp, self._path(rel))

    def put_bytes(self, data: bytes, rel: str) -> None:
        temp = self._temp(rel)
        self.fs.makedirs(temp.rpartition("/")[0], exist_ok=True)
        self.fs.pipe_file(temp, data)
        self.fs.mv(temp, self._path(rel))


class TaskCache:
    """``get`` a finished task by id for a server, ``fetch`` its files, ``put`` a new one.
    Blocking: the executor calls it from its thread pool. Failures raise CacheError."""

    def __init__(self, url: str, backend: _Backend) -> None:
        self.url = url
        self._backend = backend

    def __repr__(self) -> str:
        return f"TaskCache({self.url!r})"

    @staticmethod
    def _folder(task_id: str, server: str) -> str:
        if not _TASK_ID.match(task_id):
            raise CacheError(f"'{task_id}' is not a task id")
        return f"{PREFIX}/{server_folder(server)}/{task_id}"

    def get(self, task_id: str, server: str) -> CacheEntry | None:
        """The entry of ``task_id`` made on ``server`` (an origin); None when there is none."""
        folder = self._folder(task_id, server)
        data = self._guard("read", self._backend.read, f"{folder}/{ENTRY}")
        if data is None:
            return None
        try:
            entry = CacheEntry.from_dict(json.loads(data.decode("utf-8")))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CacheError(f"{self.url}: {folder}/{ENTRY} is not a valid entry ({exc})") from exc
        if entry.task != task_id or entry.server != server:
            raise CacheError(
                f"{self.url}: {folder}/{ENTRY} describes task {entry.task} of {entry.server}"
            )
        return entry

    def fetch(self, entry: CacheEntry, output: CachedOutput, dest: Path) -> None:
        """Copy one output to ``dest`` (replaced atomically), checking its sha256 and size;
        CacheError (and nothing at ``dest``) when it does not match."""
        rel = f"{self._folder(entry.task, entry.server)}/{output.name}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        temp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
        digest = hashlib.sha256()
        size = 0
        try:
            with (
                self._guard("read", self._backend.open, rel) as read,
                temp.open("wb") as out,
            ):
                while chunk := self._guard("read", read.read, _CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if digest.hexdigest() != output.sha256 or size != output.bytes:
                raise CacheError(
                    f"{self.url}: {rel} does not match its entry (sha256 {digest.hexdigest()[:12]}"
                    f", {size} bytes; expected {output.sha256[:12]}, {output.bytes} bytes)"
                )
            os.replace(temp, dest)
        finally:
            temp.unlink(missing_ok=True)

    def put(self, entry: CacheEntry, files: Mapping[int, Path]) -> None:
        """Store ``entry`` with its output files (by index); ``entry.json`` last."""
        folder = self._folder(entry.task, entry.server)
        for output in entry.outputs:
            src = files[output.index]
            self._guard("write", self._backend.put_file, src, f"{folder}/{output.name}")
        text = json.dumps(entry.to_dict(), indent=1, sort_keys=True, default=str)
        self._guard("write", self._backend.put_bytes, text.encode(), f"{folder}/{ENTRY}")

    def _guard(self, doing: str, action: Any, *args: Any) -> Any:
        try:
            return action(*args)
        except CacheError:
            raise
        except Exception as exc:  # any fsspec backend's error: the run goes on without it
            raise CacheError(f"cannot {doing} the cache {self.url}: {exc}") from exc


def open_cache(url: str) -> TaskCache:
    """The cache at ``url``: a folder path, or an fsspec URL (UsageError when it cannot be
    used: fsspec or the backend's package missing, an unknown protocol)."""
    url = url.strip()
    if not url:
        raise UsageError("--cache: give a folder or a URL (s3://bucket/path, gs://..., file://...)")
    if "://" not in url:
        root = Path(url).expanduser()
        if root.exists() and not root.is_dir():
            raise UsageError(f"--cache {url}: not a folder")
        return TaskCache(url, _Folder(root))
    try:
        import fsspec
    except ImportError as exc:
        raise UsageError(
            f"--cache {url}: a cache URL needs fsspec: pip install 'rhflow[cloud]' "
            "(or give a folder path)"
        ) from exc
    try:
        fs, root = fsspec.core.url_to_fs(url)
    except ImportError as exc:
        raise UsageError(
            f"--cache {url}: {exc} (install the package for this kind of URL)"
        ) from exc
    except (ValueError, TypeError, OSError) as exc:
        raise UsageError(f"--cache {url}: {exc}") from exc
    return TaskCache(url, _Fsspec(fs, str(root)))


def _money(value: Any) -> float | None:
    """An entry's money: a number, or None (an entry of an earlier rhflow has none)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"money {value!r} is not a number")
    return float(value)

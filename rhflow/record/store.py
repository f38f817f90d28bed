"""The state store: what each planned task did, kept in SQLite inside the output folder.

``<output>/.rhflow/state.db`` (WAL journal) records, per planned task id, the remote taskId (written
and committed the moment create answers), status, attempts, timings, failure, cost and every output
file; and, per server, which file contents were already uploaded (sha256 -> uploaded name). Nothing
here ever holds the API key.

The connection is shared by the event loop and the worker threads (uploads render in threads), so
every statement runs under one lock. A run holds the folder's lock, so this process is the only
writer: each record written or read is kept in memory (written through, after the commit), so
``get`` and ``update`` cost one transaction and no read, and the ids written since the last
``take_changed`` tell the manifest which entries to rebuild.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rhflow.errors import DamagedStateError, StateError, StateUnusableError

STATE_DIR = ".rhflow"
DB_NAME = "state.db"
SCHEMA_VERSION = 2
RESERVE_NAME = "reserve"
RESERVE_BYTES = 256 * 1024

#: Task statuses kept in the store. ``submitted`` has a remote id whose fate is not known yet;
#: ``downloading`` succeeded remotely but not every file is on disk yet.
ACTIVE = frozenset({"submitted", "queued", "running", "downloading"})
#: Statuses in which the remote task may still be queued or running (and billing).
REMOTE_ACTIVE = frozenset({"submitted", "queued", "running"})
STATUSES = frozenset({"pending", "succeeded", "failed", "cancelled"}) | ACTIVE

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    step TEXT NOT NULL,
    status TEXT NOT NULL,
    remote_id TEXT,
    server TEXT,
    emulated INTEGER NOT NULL DEFAULT 0,
    key TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    params TEXT NOT NULL DEFAULT '{}',
    node_info_list TEXT,
    submitted_at REAL,
    started_at REAL,
    finished_at REAL,
    cost_time REAL,
    coins REAL,
    money REAL,
    currency TEXT,
    failure TEXT,
    notes TEXT NOT NULL DEFAULT '[]',
    updated_at REAL NOT NULL,
    sending REAL,
    unanswered INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS outputs (
    task TEXT NOT NULL,
    idx INTEGER NOT NULL,
    node_id TEXT,
    url TEXT,
    file_type TEXT,
    path TEXT,
    sha256 TEXT,
    bytes INTEGER,
    PRIMARY KEY (task, idx)
);
CREATE TABLE IF NOT EXISTS remote_tasks (
    remote_id TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    server TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS uploads (
    server TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    file_name TEXT NOT NULL,
    uploaded_at REAL NOT NULL,
    PRIMARY KEY (server, sha256)
);
"""


@dataclass(frozen=True, slots=True)
class OutputRecord:
    """One output of a task: where the server put it and, once downloaded, where it is."""

    index: int
    node_id: str | None
    url: str | None
    file_type: str | None
    path: str | None = None
    sha256: str | None = None
    bytes: int | None = None


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """What the store knows about one planned task."""

    id: str
    step: str
    status: str
    remote_id: str | None = None
    server: str | None = None  # the API base URL the task was created on
    emulated: bool = False  # that server was an emulator: the outputs are placeholders
    key: str | None = None  # fingerprint of the API key that created it (never the key)
    attempts: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)
    node_info_list: tuple[Mapping[str, Any], ...] | None = None
    submitted_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    cost_time: float | None = None
    coins: float | None = None
    #: What an enterprise key paid (consumeMoney and thirdPartyConsumeMoney), and in what
    #: currency (as accountStatus gives it; None when it did not).
    money: float | None = None
    currency: str | None = None
    failure: Mapping[str, Any] | None = None
    notes: tuple[str, ...] = ()
    outputs: tuple[OutputRecord, ...] = ()
    #: A create was sent at this time and its answer is not recorded yet (cleared with the
    #: remote id in one transaction): found set by a later run, the process died meanwhile.
    sending: float | None = None
    #: Creates whose answer never came (dropped, timed out, the process killed): RunningHub
    #: may have created the task then too, under an id nobody knows.
    unanswered: int = 0


class Store:
    """The SQLite state of one output folder. Use as a context manager, or call ``close()``."""

    def __init__(self, path: Path, *, clock: Any = time.time) -> None:
        self.path = path
        self._clock = clock
        self._lock = threading.RLock()
        self._reserved = False
        self._cache: dict[str, TaskRecord] = {}
        #: task id -> (params, node_info_list, their JSON texts) as last written
        self._texts: dict[str, tuple[Any, Any, str | None, str | None]] = {}
        self._changed: set[str] = set()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise unusable(path.parent, exc) from exc
        try:
            self._db = sqlite3.connect(
                str(path), timeout=30.0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StateUnusableError(
                f"cannot open the state store {path}: {exc}; check that the output folder is "
                "writable"
            ) from exc
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise _sqlite_problem(path, exc) from exc

    def _open(self) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        version = _schema_version(self._db)
        if version is not None and version > SCHEMA_VERSION:
            raise StateUnusableError(
                f"the state store {self.path} was written by a newer rhflow (schema "
                f"{version}; this rhflow reads {SCHEMA_VERSION}); run it with that rhflow, or "
                f"move it aside (mv {self.path} {self.path}.new) and run again to rebuild it "
                "from manifest.json"
            )
        self._db.executescript(_SCHEMA)
        _check_columns(self._db, self.path)
        _add_missing_columns(self._db)
        _migrate(self._db, version)

    def check(self) -> None:
        """Read every record once: a DamagedStateError names the first that cannot be read."""
        self.tasks()
        self.remote_ids()

    @classmethod
    def for_output(cls, output_dir: Path) -> Store:
        return cls(output_dir / STATE_DIR / DB_NAME)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self.release_reserve()

    # -- room for the commits that must not fail ------------------------------------------------

    def reserve(self, size: int = RESERVE_BYTES) -> bool:
        """Hold ``size`` bytes of the folder's disk in ``.rhflow/reserve``, to be given back
        when a write the run cannot lose (a created task's id) meets a full disk."""
        path = self.path.with_name(RESERVE_NAME)
        try:
            with open(path, "wb") as handle:
                handle.write(b"\0" * size)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError:
            path.unlink(missing_ok=True)
            return False
        self._reserved = True
        return True

    def release_reserve(self) -> bool:
        """Give the bytes this store reserved back to the disk; False when it held none."""
        if not self._reserved:
            return False
        self._reserved = False
        try:
            self.path.with_name(RESERVE_NAME).unlink()
        except OSError:
            return False
        return True

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StateError(f"cannot write the state store {self.path}: {exc}") from exc

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                cursor = self._db.execute(sql, args)
                cursor.row_factory = sqlite3.Row
                return list(cursor.fetchall())
            except sqlite3.Error as exc:
                raise _sqlite_problem(self.path, exc) from exc

    # -- meta ----------------------------------------------------------------------------------

    def set_meta(self, key: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0]["value"]) if rows else None

    # -- tasks ---------------------------------------------------------------------------------

    def save(self, record: TaskRecord) -> None:
        """Insert or replace one task and its outputs, in one transaction."""
        self.save_many([record])

    def save_many(self, records: Sequence[TaskRecord]) -> None:
        """Insert or replace tasks and their outputs, all in one transaction."""
        with self._lock:
            written: dict[str, TaskRecord] = {}
            with self._tx() as db:
                for record in records:
                    before = written.get(record.id) or self._cache.get(record.id)
                    self._write(db, record, before)
                    written[record.id] = record
            for record in records:
                self._cache[record.id] = record
                self._changed.add(record.id)

    def take_changed(self) -> set[str]:
        """The ids of the tasks written or forgotten since the last call."""
        with self._lock:
            changed, self._changed = self._changed, set()
            return changed

    def _write(self, db: sqlite3.Connection, record: TaskRecord, before: TaskRecord | None) -> None:
        """Write ``record``; ``before`` is what the database holds for it (None: unknown)."""
        db.execute(
            "INSERT OR REPLACE INTO tasks (id, step, status, remote_id, server, emulated, key, "
            "attempts, params, node_info_list, submitted_at, started_at, finished_at, "
            "cost_time, coins, failure, notes, updated_at, sending, unanswered, money, currency) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            _task_row(record, self._clock(), self._request_texts(record)),
        )
        if before is None or before.outputs != record.outputs:
            self._write_outputs(db, record)
        if record.remote_id and (before is None or before.remote_id != record.remote_id):
            db.execute(
                "INSERT OR IGNORE INTO remote_tasks (remote_id, task, server, created_at) "
                "VALUES (?,?,?,?)",
                (record.remote_id, record.id, record.server, self._clock()),
            )

    def _request_texts(self, record: TaskRecord) -> tuple[str | None, str | None]:
        """The JSON of ``record``'s params and node_info_list, kept from its last write while
        they are the same objects (a record's update keeps them: most writes of a task change
        only its status or outputs, and encoding these was most of a write's cost)."""
        kept = self._texts.get(record.id)
        if kept is None or kept[0] is not record.params or kept[1] is not record.node_info_list:
            nil = record.node_info_list
            texts = (
                _dump(dict(record.params)),
                None if nil is None else _dump([dict(e) for e in nil]),
            )
            kept = self._texts[record.id] = (record.params, nil, *texts)
        return kept[2], kept[3]

    def _write_outputs(self, db: sqlite3.Connection, record: TaskRecord) -> None:
        db.execute("DELETE FROM outputs WHERE task = ?", (record.id,))
        db.executemany(
            "INSERT INTO outputs (task, idx, node_id, url, file_type, path, sha256, bytes) "
            "VALUES (?,?,?,?,?,?,?,?)",
            [
                (record.id, o.index, o.node_id, o.url, o.file_type, o.path, o.sha256, o.bytes)
                for o in record.outputs
            ],
        )

    def update(self, task_id: str, **changes: Any) -> TaskRecord:
        """Change some fields of a stored task and return the new record."""
        current = self.get(task_id)
        if current is None:
            raise StateError(f"the state store {self.path} has no task {task_id}")
        record = replace(current, **changes)
        self.save(record)
        return record

    def forget(self, task_ids: Sequence[str]) -> None:
        """Delete tasks and their outputs (``remote_ids`` keeps every remote task created)."""
        with self._lock:
            with self._tx() as db:
                for task_id in task_ids:
                    db.execute("DELETE FROM tasks WHERE id = ?", (task_id,))
                    db.execute("DELETE FROM outputs WHERE task = ?", (task_id,))
            for task_id in task_ids:
                self._cache.pop(task_id, None)
                self._texts.pop(task_id, None)
                self._changed.add(task_id)

    def get(self, task_id: str) -> TaskRecord | None:
        with self._lock:
            cached = self._cache.get(task_id)
            if cached is not None:
                return cached
            rows = self._query("SELECT * FROM tasks WHERE id = ?", (task_id,))
            if not rows:
                return None
            record = self._decode(rows[0], self._outputs_of([task_id]).get(task_id, ()))
            self._cache[task_id] = record
            return record

    def tasks(self, ids: Sequence[str] | None = None) -> dict[str, TaskRecord]:
        """Every stored task (or those of ``ids``), by id."""
        with self._lock:
            if ids is not None and all(i in self._cache for i in ids):
                return {i: self._cache[i] for i in sorted(ids)}
            rows = self._query("SELECT * FROM tasks ORDER BY id")
            wanted = set(ids) if ids is not None else None
            rows = [r for r in rows if wanted is None or r["id"] in wanted]
            outputs = self._outputs_of(None)
            found = {r["id"]: self._decode(r, outputs.get(r["id"], ())) for r in rows}
            self._cache.update(found)
            return found

    def _decode(self, row: sqlite3.Row, outputs: tuple[OutputRecord, ...]) -> TaskRecord:
        try:
            return _task_from_row(row, outputs)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            what = f"{type(exc).__name__}: {exc}"
            raise DamagedStateError(
                f"the state store {self.path} holds a record that cannot be read (task "
                f"{_row_id(row)}: {what})",
                reason=f"task {_row_id(row)}: {what}",
            ) from exc

    def _outputs_of(self, ids: Sequence[str] | None) -> dict[str, tuple[OutputRecord, ...]]:
        if ids is None:
            rows = self._query("SELECT * FROM outputs ORDER BY task, idx")
        else:
            marks = ",".join("?" * len(ids))
            rows = self._query(f"SELECT * FROM outputs WHERE task IN ({marks}) ORDER BY idx", ids)
        found: dict[str, list[OutputRecord]] = {}
        try:
            self._collect_outputs(rows, found)
        except (IndexError, KeyError, TypeError) as exc:
            raise DamagedStateError(
                f"the state store {self.path} holds an output record that cannot be read "
                f"({type(exc).__name__}: {exc})",
                reason=f"outputs: {type(exc).__name__}: {exc}",
            ) from exc
        return {k: tuple(v) for k, v in found.items()}

    @staticmethod
    def _collect_outputs(rows: list[sqlite3.Row], found: dict[str, list[OutputRecord]]) -> None:
        for r in rows:
            found.setdefault(r["task"], []).append(
                OutputRecord(
                    r["idx"],
                    r["node_id"],
                    r["url"],
                    r["file_type"],
                    r["path"],
                    r["sha256"],
                    r["bytes"],
                )
            )

    def remote_ids(self) -> dict[str, str]:
        """Every remote taskId ever created from this folder -> planned task id."""
        rows = self._query("SELECT remote_id, task FROM remote_tasks ORDER BY created_at, rowid")
        return {r["remote_id"]: r["task"] for r in rows}

    def remote_ids_of(self, task_id: str) -> list[str]:
        """The remote taskIds ever created for one planned task, oldest first."""
        rows = self._query(
            "SELECT remote_id FROM remote_tasks WHERE task = ? ORDER BY created_at, rowid",
            (task_id,),
        )
        return [str(r["remote_id"]) for r in rows]

    # -- uploads -------------------------------------------------------------------------------

    def upload_name(self, server: str, sha256: str) -> str | None:
        rows = self._query(
            "SELECT file_name FROM uploads WHERE server = ? AND sha256 = ?", (server, sha256)
        )
        return str(rows[0]["file_name"]) if rows else None

    def remember_upload(self, server: str, sha256: str, file_name: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO uploads (server, sha256, file_name, uploaded_at) "
                "VALUES (?,?,?,?)",
                (server, sha256, file_name, self._clock()),
            )


#: Columns added after the first release of the store: (table, column, declaration).
_ADDED_COLUMNS = (
    ("tasks", "emulated", "INTEGER NOT NULL DEFAULT 0"),
    ("tasks", "key", "TEXT"),
    ("tasks", "sending", "REAL"),
    ("tasks", "unanswered", "INTEGER NOT NULL DEFAULT 0"),
)
#: Schema migrations, by the version they bring a store to: (table, column, declaration)
#: added. Version 2: what enterprise keys pay, money and its currency, per task.
_MIGRATIONS: dict[int, tuple[tuple[str, str, str], ...]] = {
    2: (("tasks", "money", "REAL"), ("tasks", "currency", "TEXT")),
}
#: Columns every store has had since its first release; a table without them is not ours.
_REQUIRED_COLUMNS = {
    "meta": {"key", "value"},
    "tasks": {
        "id",
        "step",
        "status",
        "remote_id",
        "server",
        "attempts",
        "params",
        "node_info_list",
        "submitted_at",
        "started_at",
        "finished_at",
        "cost_time",
        "coins",
        "failure",
        "notes",
        "updated_at",
    },
    "outputs": {"task", "idx", "node_id", "url", "file_type", "path", "sha256", "bytes"},
    "remote_tasks": {"remote_id", "task", "server", "created_at"},
    "uploads": {"server", "sha256", "file_name", "uploaded_at"},
}


def _schema_version(db: sqlite3.Connection) -> int | None:
    """The schema version stamped in ``meta`` (None in a new store)."""
    have = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchall()
    if not have:
        return None
    try:
        rows = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    except sqlite3.OperationalError:
        return None  # a meta table of another shape: _check_columns says so
    try:
        return int(rows[0][0]) if rows else None
    except (TypeError, ValueError):
        return SCHEMA_VERSION + 1 if rows else None


def _check_columns(db: sqlite3.Connection, path: Path) -> None:
    """Refuse a store whose tables lack columns rhflow reads (another program's database)."""
    for table, wanted in _REQUIRED_COLUMNS.items():
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        missing = sorted(wanted - have)
        if missing:
            raise DamagedStateError(
                f"the state store {path} is not one rhflow wrote: table {table} has no "
                f"column {', '.join(missing)}",
                reason=f"table {table} has no column {', '.join(missing)}",
            )


def _sqlite_problem(path: Path, exc: sqlite3.Error) -> StateError:
    """A damaged file (not a database, malformed) or one that cannot be used (read-only...)."""
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and not _damaged_words(text):
        return StateUnusableError(
            f"cannot use the state store {path}: {text}; check that the output folder is "
            "writable and has free space"
        )
    if isinstance(exc, sqlite3.DatabaseError):
        return DamagedStateError(f"the state store {path} cannot be read: {text}", reason=text)
    return StateError(f"cannot use the state store {path}: {text}")


def _damaged_words(text: str) -> bool:
    return any(
        w in text for w in ("malformed", "not a database", "no such column", "no such table")
    )


def unusable(path: Path, exc: OSError) -> StateUnusableError:
    """The message for a folder of rhflow's state that cannot be created or written."""
    blocker = next((p for p in (path, *path.parents) if p.is_file()), None)
    if blocker is not None:
        role = "the folder rhflow keeps its state in" if blocker.name == STATE_DIR else "a folder"
        return StateUnusableError(
            f"{blocker} is a file, not {role}; move it aside (mv {blocker} {blocker}.bak) and "
            "run again"
        )
    cause = exc.strerror or str(exc)
    return StateUnusableError(
        f"cannot write in {path}: {cause}; rhflow keeps its state there: make the folder "
        "writable (or free some space), or choose another output folder with --out"
    )


def _row_id(row: sqlite3.Row) -> str:
    try:
        return str(row["id"])
    except (IndexError, KeyError):
        return "?"


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"{what} is {type(value).__name__}, not an object")
    return value


def _texts(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise TypeError(f"notes are {type(value).__name__}, not a list")
    return [str(v) for v in value]


def _migrate(db: sqlite3.Connection, version: int | None) -> None:
    """Bring a store of an earlier schema ``version`` (None: a new store, or one of version 1
    written before stores were stamped) to ``SCHEMA_VERSION``, one step at a time, each in one
    transaction with its new version stamp."""
    for target in range(max(2, (version or 1) + 1), SCHEMA_VERSION + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            for table, column, declaration in _MIGRATIONS.get(target, ()):
                if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
                (str(target),),
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Bring a store written by an earlier rhflow up to the current columns."""
    for table, column, declaration in _ADDED_COLUMNS:
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def _task_row(r: TaskRecord, now: float, texts: tuple[str | None, str | None]) -> tuple[Any, ...]:
    return (
        r.id,
        r.step,
        r.status,
        r.remote_id,
        r.server,
        int(r.emulated),
        r.key,
        r.attempts,
        *texts,  # params, node_info_list
        r.submitted_at,
        r.started_at,
        r.finished_at,
        r.cost_time,
        r.coins,
        _dump(None if r.failure is None else dict(r.failure)),
        _dump(list(r.notes)),
        now,
        r.sending,
        r.unanswered,
        r.money,
        r.currency,
    )


def _task_from_row(row: sqlite3.Row, outputs: tuple[OutputRecord, ...]) -> TaskRecord:
    nil = json.loads(row["node_info_list"]) if row["node_info_list"] else None
    if row["status"] not in STATUSES:
        raise ValueError(f"unknown status {row['status']!r}")
    return TaskRecord(
        id=row["id"],
        step=row["step"],
        status=row["status"],
        remote_id=row["remote_id"],
        server=row["server"],
        emulated=bool(row["emulated"]),
        key=row["key"],
        attempts=row["attempts"],
        params=_object(json.loads(row["params"]), "params"),
        node_info_list=None if nil is None else tuple(nil),
        submitted_at=row["submitted_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        cost_time=row["cost_time"],
        coins=row["coins"],
        money=row["money"],
        currency=row["currency"],
        failure=_object(json.loads(row["failure"]), "failure") if row["failure"] else None,
        notes=tuple(_texts(json.loads(row["notes"]))),
        outputs=outputs,
        sending=row["sending"],
        unanswered=int(row["unanswered"] or 0),
    )

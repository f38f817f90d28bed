"""The manifest: what a run did, as versioned JSON beside its outputs.

``write_manifest`` replaces the file atomically (temp file in the same folder, fsync,
``os.replace``), so a crash at any moment leaves the previous complete manifest, never a torn one.
``read_manifest`` turns the file back into the same objects. The shape is defined by
``schemas/manifest.schema.json``; ``manifest_version`` changes when a key changes meaning.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rhflow import atomic
from rhflow.errors import StateError, UsageError
from rhflow.record.costs import money_totals

MANIFEST_VERSION = 1
TASK_STATUSES = ("succeeded", "failed", "cancelled", "pending", "running")
RUN_STATUSES = ("running", "succeeded", "failed", "interrupted")


@dataclass(frozen=True, slots=True)
class OutputFile:
    """One file a task produced. ``path`` is relative to the manifest's folder."""

    node_id: str | None
    url: str | None
    path: str | None
    sha256: str | None
    bytes: int | None
    file_type: str | None
    index: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "node_id": self.node_id,
            "url": self.url,
            "path": self.path,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "file_type": self.file_type,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutputFile:
        return cls(
            node_id=data.get("node_id"),
            url=data.get("url"),
            path=data.get("path"),
            sha256=data.get("sha256"),
            bytes=data.get("bytes"),
            file_type=data.get("file_type"),
            index=int(data.get("index", 0)),
        )


@dataclass(frozen=True, slots=True)
class TaskEntry:
    """One planned task and what became of it."""

    id: str
    step: str
    params: Mapping[str, Any]
    node_info_list: list[Mapping[str, Any]] | None
    task_id: str | None
    status: str
    attempts: int
    outputs: tuple[OutputFile, ...] = ()
    needs: Mapping[str, str] = field(default_factory=dict)
    failure: str | None = None
    failure_detail: Mapping[str, Any] | None = None
    submitted_at: str | None = None
    finished_at: str | None = None
    duration: float | None = None
    cost_time: float | None = None
    coins: float | None = None
    #: What an enterprise key paid for the task, and in what currency (None: no money).
    money: float | None = None
    currency: str | None = None
    progress: float | None = None
    notes: tuple[str, ...] = ()
    server: str | None = None
    emulated: bool = False
    key: str | None = None  # fingerprint of the API key that created the task
    #: ``{"task_ids": [...], "unanswered": n, "reason": "..."}`` when the task may have been
    #: created (and paid for) twice: a create whose answer never came, with every remote id
    #: known for it; None otherwise.
    maybe_twice: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "step": self.step,
            "params": dict(self.params),
            "node_info_list": self.node_info_list,
            "task_id": self.task_id,
            "status": self.status,
            "attempts": self.attempts,
            "outputs": [o.to_dict() for o in self.outputs],
            "needs": dict(self.needs),
            "failure": self.failure,
            "failure_detail": None if self.failure_detail is None else dict(self.failure_detail),
            "submitted_at": self.submitted_at,
            "finished_at": self.finished_at,
            "duration": self.duration,
            "cost_time": self.cost_time,
            "coins": self.coins,
            "money": self.money,
            "currency": self.currency,
            "progress": self.progress,
            "notes": list(self.notes),
            "server": self.server,
            "emulated": self.emulated,
            "key": self.key,
            "maybe_twice": None if self.maybe_twice is None else dict(self.maybe_twice),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskEntry:
        return cls(
            id=data["id"],
            step=data["step"],
            params=data.get("params", {}),
            node_info_list=data.get("node_info_list"),
            task_id=data.get("task_id"),
            status=data["status"],
            attempts=int(data.get("attempts", 0)),
            outputs=tuple(OutputFile.from_dict(o) for o in data.get("outputs", ())),
            needs=data.get("needs", {}),
            failure=data.get("failure"),
            failure_detail=data.get("failure_detail"),
            submitted_at=data.get("submitted_at"),
            finished_at=data.get("finished_at"),
            duration=data.get("duration"),
            cost_time=data.get("cost_time"),
            coins=data.get("coins"),
            money=_typed(data.get("money"), (int, float), "money"),
            currency=_typed(data.get("currency"), str, "currency"),
            progress=data.get("progress"),
            notes=tuple(data.get("notes", ())),
            server=data.get("server"),
            emulated=bool(data.get("emulated", False)),
            key=data.get("key"),
            maybe_twice=data.get("maybe_twice"),
        )


@dataclass(frozen=True, slots=True)
class Manifest:
    """A run: the pipeline, when, how it ended, totals, and every task."""

    rhflow_version: str
    pipeline: str
    pipeline_hash: str
    status: str
    started_at: str
    tasks: tuple[TaskEntry, ...]
    finished_at: str | None = None
    source: str | None = None
    shard: str | None = None
    counts: Mapping[str, int] = field(default_factory=dict)
    #: ``{"coins", "cost_time"}`` and, where money was charged, ``"money": {CURRENCY: n}``.
    cost: Mapping[str, Any] = field(default_factory=dict)
    errors: tuple[str, ...] = ()
    manifest_version: int = MANIFEST_VERSION
    #: ``{"origin": "scheme://host:port", "emulated": bool}`` of the server this run used.
    server: Mapping[str, Any] | None = None
    #: This run's spend: ``--max-coins`` and ``--max-money``, the estimates and how they were
    #: made, the coins and money spent by tasks this run ran, and whether it stopped
    #: submitting at a cap.
    budget: Mapping[str, Any] | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def maybe_twice(self) -> tuple[TaskEntry, ...]:
        """Tasks that may have been created (and paid for) twice."""
        return tuple(t for t in self.tasks if t.maybe_twice)

    @property
    def failed_tasks(self) -> tuple[TaskEntry, ...]:
        return tuple(t for t in self.tasks if t.status == "failed")

    def to_dict(self) -> dict[str, Any]:
        return {**self.head_dict(), "tasks": [t.to_dict() for t in self.tasks]}

    def head_dict(self) -> dict[str, Any]:
        """Every key but ``tasks``, which comes after them in ``to_dict``."""
        return {
            "manifest_version": self.manifest_version,
            "rhflow_version": self.rhflow_version,
            "pipeline": self.pipeline,
            "pipeline_hash": self.pipeline_hash,
            "source": self.source,
            "shard": self.shard,
            "server": None if self.server is None else dict(self.server),
            "status": self.status,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "counts": dict(self.counts),
            "cost": dict(self.cost),
            "budget": None if self.budget is None else dict(self.budget),
            "errors": list(self.errors),
            "maybe_twice": len(self.maybe_twice),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        version = data.get("manifest_version")
        if version != MANIFEST_VERSION:
            raise StateError(
                f"manifest_version {version!r} is not supported (this rhflow reads version "
                f"{MANIFEST_VERSION}); run the pipeline again with this rhflow to rewrite it"
            )
        return cls(
            manifest_version=version,
            rhflow_version=data["rhflow_version"],
            pipeline=data["pipeline"],
            pipeline_hash=data.get("pipeline_hash", ""),
            source=data.get("source"),
            shard=data.get("shard"),
            server=data.get("server"),
            status=data["status"],
            started_at=data["started_at"],
            finished_at=data.get("finished_at"),
            counts=data.get("counts", {}),
            cost=data.get("cost", {}),
            budget=data.get("budget"),
            errors=tuple(data.get("errors", ())),
            tasks=tuple(TaskEntry.from_dict(t) for t in data.get("tasks", ())),
        )


def _typed(value: Any, kinds: type | tuple[type, ...], key: str) -> Any:
    """``value`` when it is None or of ``kinds``; a ValueError naming ``key`` otherwise."""
    if value is None or (isinstance(value, kinds) and not isinstance(value, bool)):
        return value
    raise ValueError(f"{key!r}: {value!r} is not a {getattr(kinds, '__name__', 'number')}")


def count_statuses(tasks: tuple[TaskEntry, ...]) -> dict[str, int]:
    """``{"total": n, "succeeded": n, ...}`` with every task status present."""
    counts = {"total": len(tasks)} | {s: 0 for s in TASK_STATUSES}
    for task in tasks:
        counts[task.status] = counts.get(task.status, 0) + 1
    return counts


def manifest_text(manifest: Manifest) -> str:
    """The manifest file's text: indented JSON, UTF-8 characters as they are."""
    return json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False, default=str) + "\n"


def total_cost(tasks: tuple[TaskEntry, ...]) -> dict[str, Any]:
    """``{"coins": ..., "cost_time": ...}`` summed over ``tasks`` (unknown counts as 0), and
    ``"money": {CURRENCY: ...}`` when some task was paid in money."""
    coins = sum(t.coins or 0.0 for t in tasks)
    seconds = sum(t.cost_time or 0.0 for t in tasks)
    money = money_totals(tasks)
    return {"coins": coins, "cost_time": seconds} | ({"money": money} if money else {})


def write_manifest(path: Path, manifest: Manifest) -> None:
    """Replace ``path`` with ``manifest`` atomically (temp + fsync + os.replace)."""
    write_atomic(path, manifest_text(manifest).encode("utf-8"))


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    try:
        atomic.write_atomic(path, data)
    except OSError as exc:
        raise StateError(atomic.cannot_write(path, exc)) from exc


def read_given_manifest(path: Path) -> Manifest:
    """A manifest named on a command line. One that cannot be read is bad input (exit 2) for
    every command that reads one, never confused with a result such as diff's 'something
    changed' (exit 1)."""
    try:
        return read_manifest(path)
    except StateError as err:
        raise UsageError(str(err)) from err


def read_manifest(path: Path) -> Manifest:
    """Read a manifest written by ``write_manifest``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise StateError(f"no manifest at {path}; run the pipeline first") from exc
    except (OSError, ValueError) as exc:
        raise StateError(f"cannot read the manifest {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise StateError(f"{path} is not a manifest (expected a JSON object)")
    try:
        return Manifest.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StateError(f"{path} is not a valid manifest: missing or wrong key {exc}") from exc

"""``rhflow.lock``: the content hash of every cloud workflow and AI app a pipeline runs.

A workflow can be edited on the website behind an unchanged id. The lock, written beside the
pipeline by ``rhflow lock``, keeps for each workflow id (and AI app id) the sha256 of its
canonical ``getJsonApiFormat`` JSON (an AI app's: of its ``apiCallDemo`` node list), when that
was fetched, from which server, and a short digest per node field, so that a later difference
can be named (``node 3: inputs.steps changed``). The file is JSON with sorted keys, one field a
line, so that a change shows as a small diff in review.

Steps with a ``workflow_file`` are not locked: the local graph is what is sent, and its hash is
already part of each task id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from rhflow.atomic import write_atomic
from rhflow.errors import LockError
from rhflow.model import Pipeline, Step

LOCK_NAME = "rhflow.lock"
LOCK_VERSION = 1
_FIELD_DIGEST = 12  # hex characters kept per field: enough to tell a change, short in a diff
_SECTIONS = {"workflow": "workflows", "app": "apps"}

#: ``(kind, id)``: kind is "workflow" or "app" (AI apps, quick-create ones included).
Key = tuple[str, str]


class _LockClient(Protocol):
    def get_workflow_json(self, workflow_id: str) -> Any: ...

    def app_fields(self, webapp_id: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class LockEntry:
    """One locked workflow or AI app."""

    kind: str
    id: str
    sha256: str
    fetched_at: str
    server: str
    fields: Mapping[str, Mapping[str, str]]  # node id -> field -> short digest of its value

    def to_dict(self) -> dict[str, Any]:
        return {
            "fetched_at": self.fetched_at,
            "nodes": {node: dict(fields) for node, fields in self.fields.items()},
            "server": self.server,
            "sha256": self.sha256,
        }


@dataclass(frozen=True, slots=True)
class Lock:
    """The entries of one ``rhflow.lock`` file, by ``(kind, id)``."""

    path: Path
    entries: Mapping[Key, LockEntry]

    def to_text(self) -> str:
        data: dict[str, Any] = {"lock_version": LOCK_VERSION, "apps": {}, "workflows": {}}
        for (kind, target_id), entry in self.entries.items():
            data[_SECTIONS[kind]][target_id] = entry.to_dict()
        return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def lock_path(pipeline_file: str | Path) -> Path:
    """Where the lock of ``pipeline_file`` lives: ``rhflow.lock`` in the same folder."""
    return Path(pipeline_file).parent / LOCK_NAME


def lock_key(step: Step) -> Key | None:
    """What a step's tasks run on the server, as a lock key; None for a ``workflow_file``."""
    target = step.target
    if target.kind == "workflow":
        return None if target.workflow_json is not None else ("workflow", target.id)
    return ("app", target.id)


def lock_keys(pipeline: Pipeline) -> list[Key]:
    """Every lock key of the pipeline's steps, once each, in step order."""
    return list(dict.fromkeys(k for step in pipeline.steps if (k := lock_key(step)) is not None))


def read_lock(path: Path) -> Lock | None:
    """The lock at ``path``, None when there is none; LockError when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise LockError(f"cannot read {path}: {exc}") from exc
    try:
        data = json.loads(text)
        if data.get("lock_version") != LOCK_VERSION:
            raise ValueError(f"lock_version {data.get('lock_version')!r} is not {LOCK_VERSION}")
        entries = {}
        for kind, section in _SECTIONS.items():
            for target_id, raw in (data.get(section) or {}).items():
                entries[(kind, str(target_id))] = LockEntry(
                    kind,
                    str(target_id),
                    str(raw["sha256"]),
                    str(raw["fetched_at"]),
                    str(raw["server"]),
                    {str(n): dict(f) for n, f in (raw.get("nodes") or {}).items()},
                )
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise LockError(
            f"{path} is not a valid rhflow.lock ({exc}); write it again with: rhflow lock --update"
        ) from exc
    return Lock(path, entries)


def write_lock(lock: Lock) -> None:
    """Replace the lock file atomically."""
    try:
        write_atomic(lock.path, lock.to_text().encode("utf-8"))
    except OSError as exc:
        raise LockError(f"cannot write {lock.path}: {exc}") from exc


# -- content ---------------------------------------------------------------------------------


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _short(value: Any) -> str:
    return hashlib.sha256(_canonical(value).encode()).hexdigest()[:_FIELD_DIGEST]


def describe_workflow(nodes: Mapping[str, Any]) -> tuple[str, dict[str, dict[str, str]]]:
    """sha256 of the canonical API-format JSON, and a digest per node field (``inputs.X``
    for each input, the node's other keys as they are)."""
    fields: dict[str, dict[str, str]] = {}
    for node_id, node in nodes.items():
        node_fields = {}
        for key, value in (node or {}).items():
            if key == "inputs" and isinstance(value, Mapping):
                for name, item in value.items():
                    node_fields[f"inputs.{name}"] = _short(item)
            else:
                node_fields[str(key)] = _short(value)
        fields[str(node_id)] = node_fields
    return hashlib.sha256(_canonical(nodes).encode()).hexdigest(), fields


#: The parts of an AI app's node entry that change what runs (not its descriptions).
_APP_FIELD_KEYS = ("fieldType", "fieldValue", "nodeName")


def describe_app(node_list: Iterable[Mapping[str, Any]]) -> tuple[str, dict[str, dict[str, str]]]:
    """sha256 of an AI app's node list (sorted, descriptions left out), digests per field."""
    kept = sorted(
        (
            {"nodeId": str(e.get("nodeId")), "fieldName": str(e.get("fieldName"))}
            | {k: e.get(k) for k in _APP_FIELD_KEYS}
            for e in node_list
        ),
        key=lambda e: (str(e["nodeId"]), str(e["fieldName"])),
    )
    fields: dict[str, dict[str, str]] = {}
    for entry in kept:
        fields.setdefault(str(entry["nodeId"]), {})[str(entry["fieldName"])] = _short(entry)
    return hashlib.sha256(_canonical(kept).encode()).hexdigest(), fields


def fetch_entry(client: _LockClient, key: Key, *, server: str, now: str) -> LockEntry:
    """The entry for ``key`` as the server has it now (the client's errors pass through)."""
    kind, target_id = key
    if kind == "workflow":
        digest, fields = describe_workflow(client.get_workflow_json(target_id))
    else:
        digest, fields = describe_app(
            {
                "nodeId": f.node_id,
                "fieldName": f.field_name,
                "nodeName": f.node_name,
                "fieldType": f.field_type,
                "fieldValue": f.field_value,
            }
            for f in client.app_fields(target_id).fields
        )
    return LockEntry(kind, target_id, digest, now, server, fields)


def changes(old: LockEntry, new: LockEntry) -> list[str]:
    """What differs between two entries, per node: ``node 3: inputs.steps changed``."""
    found = []
    for node in sorted(set(old.fields) | set(new.fields), key=_node_order):
        before, after = old.fields.get(node), new.fields.get(node)
        if before is None:
            found.append(f"node {node} added")
        elif after is None:
            found.append(f"node {node} removed")
        else:
            what = [
                f"{name} {_change(before.get(name), after.get(name))}"
                for name in sorted(set(before) | set(after))
                if before.get(name) != after.get(name)
            ]
            if what:
                found.append(f"node {node}: {', '.join(what)}")
    if not found and old.sha256 != new.sha256:
        found.append("its JSON changed")
    return found


def _change(before: str | None, after: str | None) -> str:
    return "added" if before is None else "removed" if after is None else "changed"


def _node_order(node_id: str) -> tuple[int, str]:
    return (int(node_id), "") if node_id.isdigit() else (1 << 60, node_id)


def label(key: Key) -> str:
    """``workflow 1904...`` or ``AI app 1877...``."""
    return f"workflow {key[1]}" if key[0] == "workflow" else f"AI app {key[1]}"


def with_hashes(pipeline: Pipeline, hashes: Mapping[Key, str]) -> Pipeline:
    """The pipeline with each step's target carrying the content hash known for it, so that
    task ids change when the workflow behind an id does."""
    steps = []
    for step in pipeline.steps:
        key = lock_key(step)
        digest = hashes.get(key) if key is not None else None
        if digest is not None:
            step = replace(step, target=replace(step.target, content_hash=digest))
        steps.append(step)
    return replace(pipeline, steps=tuple(steps))


def locked(pipeline: Pipeline) -> Pipeline:
    """The pipeline with the hashes of its lock, if it has one (offline: what ``rhflow plan``
    shows; a run uses the hashes the server has now)."""
    lock = read_lock(lock_path(pipeline.source))
    if lock is None:
        return pipeline
    return with_hashes(pipeline, {key: entry.sha256 for key, entry in lock.entries.items()})

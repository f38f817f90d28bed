"""Merge manifests of one pipeline (CI shards, or several runs) into one.

``merge_manifests`` takes the manifests with the paths they were read from and the path the
merged one will have: output paths are rewritten relative to the merged manifest's folder, a
task present in several keeps its newest succeeded record (else its newest record), and the run
totals are recomputed from the tasks kept.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path, PurePosixPath

from rhflow.errors import UsageError
from rhflow.record.manifest import (
    Manifest,
    OutputFile,
    TaskEntry,
    count_statuses,
    read_given_manifest,
    total_cost,
)
from rhflow.version import __version__


def merge_files(paths: Sequence[Path], out: Path) -> Manifest:
    """Read the manifests at ``paths`` and merge them for a manifest written at ``out``."""
    if len(paths) < 2:
        raise UsageError("give at least two manifests to merge (rhflow manifest merge A B -o M)")
    return merge_manifests([(path, read_given_manifest(path)) for path in paths], out)


def merge_manifests(manifests: Sequence[tuple[Path, Manifest]], out: Path) -> Manifest:
    """One manifest with every task of ``manifests``; refuses manifests of other pipelines."""
    _check_same_pipeline(manifests)
    kept: dict[str, TaskEntry] = {}
    for path, manifest in manifests:
        for task in manifest.tasks:
            task = _rebase(task, path.parent, out.parent)
            if task.id not in kept or _newer(task, kept[task.id]):
                kept[task.id] = task
    tasks = tuple(kept.values())
    first = manifests[0][1]
    finished = [m.finished_at for _, m in manifests if m.finished_at]
    return Manifest(
        rhflow_version=__version__,
        pipeline=first.pipeline,
        pipeline_hash=first.pipeline_hash,
        status=_run_status(tasks),
        started_at=min(m.started_at for _, m in manifests),
        finished_at=max(finished) if finished else None,
        source=first.source,
        shard=None,
        server=_common_server(manifests),
        counts=count_statuses(tasks),
        cost=total_cost(tasks),
        errors=tuple(dict.fromkeys(e for _, m in manifests for e in m.errors)),
        tasks=tasks,
    )


def _check_same_pipeline(manifests: Sequence[tuple[Path, Manifest]]) -> None:
    first_path, first = manifests[0]
    for path, manifest in manifests[1:]:
        if manifest.pipeline != first.pipeline:
            raise UsageError(
                f"{path} is a manifest of pipeline {manifest.pipeline!r} but {first_path} is of "
                f"pipeline {first.pipeline!r}; merge only manifests of one pipeline"
            )
        if manifest.pipeline_hash != first.pipeline_hash:
            raise UsageError(
                f"{path} and {first_path} are manifests of pipeline {first.pipeline!r} as two "
                f"different files (pipeline hash {manifest.pipeline_hash[:12]} vs "
                f"{first.pipeline_hash[:12]}); merge only runs of the same pipeline file and --set "
                "values, or run the pipeline again"
            )


def _newer(task: TaskEntry, kept: TaskEntry) -> bool:
    """Whether ``task`` should replace ``kept``: a success beats anything, then the newest."""
    if (task.status == "succeeded") != (kept.status == "succeeded"):
        return task.status == "succeeded"
    return (task.finished_at or task.submitted_at or "") > (
        kept.finished_at or kept.submitted_at or ""
    )


def _rebase(task: TaskEntry, source: Path, target: Path) -> TaskEntry:
    """``task`` with its output paths relative to ``target`` instead of ``source``."""
    if source.resolve() == target.resolve():
        return task
    outputs = tuple(_rebase_output(o, source, target) for o in task.outputs)
    return replace(task, outputs=outputs)


def _rebase_output(output: OutputFile, source: Path, target: Path) -> OutputFile:
    if output.path is None:
        return output
    moved = os.path.relpath((source / output.path).resolve(), target.resolve())
    return replace(output, path=PurePosixPath(*Path(moved).parts).as_posix())


def _run_status(tasks: tuple[TaskEntry, ...]) -> str:
    statuses = {t.status for t in tasks}
    if statuses & {"failed", "cancelled"}:
        return "failed"
    if statuses & {"pending", "running"}:
        return "interrupted"
    return "succeeded"


def _common_server(manifests: Sequence[tuple[Path, Manifest]]) -> dict[str, object] | None:
    servers = [dict(m.server) if m.server else None for _, m in manifests]
    return servers[0] if all(s == servers[0] for s in servers) else None

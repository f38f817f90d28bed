"""``run(path, **options) -> Manifest``: load, plan, execute and record one pipeline.

This is the Python API behind ``rhflow run`` (exported as ``rhflow.run``):

    from rhflow.execute.runner import run
    manifest = run("pipelines/sweep.yaml", emulator=True, set_vars=["style=ink"])
    for task in manifest.tasks:
        print(task.status, [o.path for o in task.outputs])

A run that ends with failed tasks still returns its manifest (``manifest.status == "failed"``);
an invalid pipeline raises ConfigError/PlanError before anything is sent.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rhflow.api.client import Client
from rhflow.errors import UsageError
from rhflow.execute.downloads import STAGING
from rhflow.execute.executor import execute
from rhflow.execute.scheduling import ExecuteOptions, PollPolicy, parse_shard, shard_tasks
from rhflow.model import Pipeline, TaskGraph
from rhflow.pipeline.workflows import CachedWorkflows, WorkflowSource
from rhflow.progress import QuietReporter, Reporter, SafeReporter
from rhflow.record.journal import Journal
from rhflow.record.lock import RunLock
from rhflow.record.manifest import Manifest
from rhflow.record.store import Store

EMULATOR_KEY = "emulator-key-not-secret"
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True, slots=True)
class RunResult:
    """A finished run: its manifest, where it was written, and the wall time."""

    manifest: Manifest
    manifest_path: Path
    elapsed: float


def run(path: str | Path, **options: Any) -> Manifest:
    """Run the pipeline at ``path``; see ``run_pipeline`` for the options."""
    return run_pipeline(path, **options).manifest


def run_pipeline(
    path: str | Path,
    *,
    set_vars: Sequence[str] = (),
    out: str | Path | None = None,
    manifest: str | Path | None = None,
    concurrency: int | None = None,
    shard: str | None = None,
    limit: int | None = None,
    only: Sequence[str] = (),
    force: bool = False,
    fail_fast: bool = False,
    detach: bool = False,
    emulator: bool = False,
    base_url: str | None = None,
    api_key: str | None = None,
    client: Client | None = None,
    reporter: Reporter | None = None,
    websocket: bool = True,
    poll: PollPolicy | None = None,
    execute_options: Mapping[str, Any] | None = None,
) -> RunResult:
    """Load, plan and run a pipeline; return the manifest (written to disk as the run went)."""
    started = time.monotonic()
    reporter = SafeReporter(reporter or QuietReporter())
    loading = _Loading(Path(path), tuple(set_vars), out, concurrency)
    pipeline = loading.load()  # every offline check first: an invalid file needs no key
    try:
        with _client(client, emulator=emulator, base_url=base_url, api_key=api_key) as made:
            if _has_unchecked_workflows(pipeline):
                workflows = CachedWorkflows(made, persist=not emulator)
                pipeline = loading.load(workflows=workflows)
            graph = _plan(pipeline, limit=limit, only=only, shard=shard)
            options = ExecuteOptions(
                concurrency=graph.concurrency,
                force=force,
                fail_fast=fail_fast,
                detach=detach,
                websocket=websocket,
                poll=poll or PollPolicy(),
                **dict(execute_options or {}),
            )
            manifest_path = Path(manifest) if manifest else graph.output_dir / MANIFEST_NAME
            result = _execute(graph, made, reporter, options, manifest_path, shard)
        reporter.emit(
            "run_finished",
            status=result.status,
            counts=dict(result.counts),
            manifest=str(manifest_path),
            errors=list(result.errors),
        )
    finally:
        reporter.close()
    return RunResult(result, manifest_path, time.monotonic() - started)


@dataclass(frozen=True, slots=True)
class _Loading:
    """How to load the pipeline: once offline, and again with workflow JSON from the server."""

    path: Path
    set_vars: tuple[str, ...]
    out: str | Path | None
    concurrency: int | None

    def load(self, workflows: WorkflowSource | None = None) -> Pipeline:
        from rhflow.pipeline.loader import load_pipeline

        if self.concurrency is not None and self.concurrency < 1:
            raise UsageError(f"--concurrency must be at least 1, got {self.concurrency}")
        return load_pipeline(
            self.path,
            set_vars=self.set_vars,
            output=None if self.out is None else Path(self.out),
            concurrency=self.concurrency,
            workflows=workflows,
        )


def _has_unchecked_workflows(pipeline: Pipeline) -> bool:
    """Some step overrides a cloud workflow that no local workflow_file describes."""
    return any(
        step.target.kind == "workflow" and step.workflow_json is None and step.overrides
        for step in pipeline.steps
    )


def _plan(
    pipeline: Pipeline, *, limit: int | None, only: Sequence[str], shard: str | None
) -> TaskGraph:
    from rhflow.planning.planner import plan

    share = parse_shard(shard) if shard else None
    graph = plan(pipeline, limit=limit, only=list(only) or None)
    graph = replace(graph, output_dir=Path(graph.output_dir).resolve())
    return shard_tasks(graph, share) if share else graph


def plan_graph(
    path: str | Path,
    *,
    set_vars: Sequence[str] = (),
    out: str | Path | None = None,
    concurrency: int | None = None,
    shard: str | None = None,
    limit: int | None = None,
    only: Sequence[str] = (),
) -> TaskGraph:
    """The task graph a run would execute (one share of it with ``shard``), planned offline."""
    pipeline = _Loading(Path(path), tuple(set_vars), out, concurrency).load()
    return _plan(pipeline, limit=limit, only=only, shard=shard)


def _execute(
    graph: TaskGraph,
    client: Client,
    reporter: Reporter,
    options: ExecuteOptions,
    manifest_path: Path,
    shard: str | None,
) -> Manifest:
    graph.output_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(graph.output_dir), Store.for_output(graph.output_dir) as store:
        _remove_leftovers(graph.output_dir, manifest_path)
        journal = Journal(manifest_path, graph, store, shard=shard)
        store.set_meta("manifest", str(manifest_path.resolve()))
        store.set_meta("pipeline", graph.pipeline)
        status = "interrupted"
        try:
            status = execute(
                graph, client, store, journal, reporter, options=options, server=client.base_url
            )
        except KeyboardInterrupt:
            raise
        except Exception:
            status = "failed"  # an unexpected error: the manifest says how far the run got
            raise
        finally:
            final = journal.finish(status)
        return final


def _remove_leftovers(output_dir: Path, manifest_path: Path) -> None:
    """Partial downloads and manifest temp files a killed run left (the lock is ours now)."""
    shutil.rmtree(output_dir / STAGING, ignore_errors=True)
    for temp in manifest_path.parent.glob(f".{manifest_path.name}.*.part"):
        temp.unlink(missing_ok=True)


@contextlib.contextmanager
def _client(
    client: Client | None, *, emulator: bool, base_url: str | None, api_key: str | None
) -> Iterator[Client]:
    if client is not None:
        yield client
        return
    if not emulator:
        with Client.from_env(api_key=api_key, base_url=base_url) as made:
            yield made
        return
    from rhflow.emulator import Emulator, EmulatorConfig

    with (
        Emulator(EmulatorConfig(task_seconds=(1.0, 2.0))) as emu,
        Client(EMULATOR_KEY, emu.url) as made,
    ):
        yield made


def exit_code(manifest: Manifest) -> int:
    """0 every task succeeded, 130 interrupted, 1 otherwise."""
    if manifest.status == "succeeded":
        return 0
    if manifest.status == "interrupted":
        return 130
    return 1

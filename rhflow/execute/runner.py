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
import math
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rhflow.api.client import BUILTIN_EMULATOR, Account, Client, origin_of, split_keys
from rhflow.errors import ApiError, StateError, UnreachableError, UsageError
from rhflow.execute.breaker import SERVER_STOPPED
from rhflow.execute.downloads import STAGING
from rhflow.execute.estimate import estimate
from rhflow.execute.executor import execute
from rhflow.execute.folder import (
    check_overwrites,
    check_pipeline,
    check_server,
    prune,
    stale_outputs,
)
from rhflow.execute.keys import KeyPool, key_out_message, no_balance
from rhflow.execute.locking import check_lock
from rhflow.execute.resume import adopt_earlier_ids
from rhflow.execute.scheduling import (
    ExecuteOptions,
    PollPolicy,
    download_limits,
    parse_shard,
    shard_tasks,
)
from rhflow.model import Pipeline, Step, TaskGraph
from rhflow.pipeline.lockfile import locked, with_hashes
from rhflow.pipeline.workflows import CachedWorkflows, WorkflowSource
from rhflow.progress import RESUME_HINT, QuietReporter, Reporter, SafeReporter
from rhflow.record.cache import TaskCache, open_cache
from rhflow.record.costs import money_amount, money_text, money_totals
from rhflow.record.journal import Journal
from rhflow.record.lock import RunLock
from rhflow.record.manifest import Manifest, read_manifest
from rhflow.record.rebuild import open_state
from rhflow.record.store import DB_NAME, STATE_DIR, Store, TaskRecord, unusable

EMULATOR_KEY = "emulator-key-not-secret"
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True, slots=True)
class RunResult:
    """A finished run: its manifest, where it was written, and the wall time.

    ``reused`` counts the tasks taken from earlier runs without a create (the ``N reused`` of
    the first line), ``run_coins`` and ``run_money`` (per currency) what the tasks paid for in
    this run cost; the manifest's ``cost`` is the folder's total for the plan, earlier runs
    included.
    """

    manifest: Manifest
    manifest_path: Path
    elapsed: float
    reused: int = 0
    run_coins: float = 0.0
    run_money: Mapping[str, float] = field(default_factory=dict)


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
    max_tasks: int | None = None,
    max_coins: float | None = None,
    max_money: float | None = None,
    force: bool = False,
    overwrite: bool = False,
    prune: bool = False,
    fail_fast: bool = False,
    detach: bool = False,
    frozen: bool = False,
    cache: str | None = None,
    emulator: bool = False,
    base_url: str | None = None,
    api_key: str | Sequence[str] | None = None,
    client: Client | None = None,
    reporter: Reporter | None = None,
    websocket: bool = True,
    poll: PollPolicy | None = None,
    execute_options: Mapping[str, Any] | None = None,
    max_outputs: int | None = None,
    max_output_size: str | int | None = None,
    download_timeout: float | None = None,
    min_download_rate: str | None = None,
    server_silence: float | None = None,
) -> RunResult:
    """Load, plan and run a pipeline; return the manifest (written to disk as the run went).

    ``max_outputs``, ``max_output_size`` (bytes, or text such as ``"500MB"``),
    ``download_timeout`` (seconds per output file) and ``min_download_rate`` (``"1KB/15s"``,
    or ``"off"``) bound what a server can make the run download; they apply to the client
    this function makes, not to one passed in. ``server_silence`` (seconds) is how long the
    server may leave API requests unanswered before the run stops (exit code 3: see
    ``rhflow.execute.breaker``)."""
    started = time.monotonic()
    reporter = SafeReporter(reporter or QuietReporter())
    loading = _Loading(Path(path), tuple(set_vars), out, concurrency)
    pipeline = loading.load()  # every offline check first: an invalid file needs no key
    if shard:
        parse_shard(shard)  # a bad --shard is a usage error, found before any request
    # planned offline too: more tasks than --max-tasks, a template past its limits or clashing
    # output names stop the run before the server is asked for anything (workflow JSON, lock)
    _plan(pipeline, limit=limit, only=only, shard=shard, max_tasks=max_tasks)
    limits = download_limits(max_output_size, download_timeout, min_download_rate)
    if max_outputs is not None:
        execute_options = {**dict(execute_options or {}), "max_outputs": max_outputs}
        if max_outputs < 1:
            raise UsageError(f"--max-outputs {max_outputs} must be at least 1")
    if server_silence is not None:
        if not 0 < server_silence < float("inf"):
            raise UsageError(
                f"--server-silence {server_silence!r} must be a positive number of seconds"
            )
        execute_options = {**dict(execute_options or {}), "silent_seconds": server_silence}
    task_cache = open_cache(cache) if cache else None  # a bad --cache too
    try:
        made_client = open_client(
            client,
            emulator=emulator,
            base_url=base_url,
            api_key=api_key,
            limits=limits,
            pipeline=pipeline,
        )
        with (
            made_client as made,
            _pool(made, api_key, single=client is not None or emulator, limits=limits) as clients,
        ):
            server = BUILTIN_EMULATOR if emulator and client is None else made.base_url
            if not force:  # before anything is sent: results of another server do not count
                _check_server(pipeline.output_dir, server)
            keys = KeyPool(clients, pipeline.concurrency)
            if len(clients) > 1:  # a refused key of a pool is out before it is asked anything
                _precheck(keys, reporter)
            made = keys.primary
            workflows = CachedWorkflows(made, persist=not emulator)
            locks = check_lock(pipeline, _Remembered(made, workflows), server=server, frozen=frozen)
            for warning in locks.warnings:
                reporter.emit("run_warning", message=warning)
            if _has_unchecked_workflows(pipeline):
                pipeline = loading.load(workflows=workflows)
                _require_workflows(pipeline, workflows)
            pipeline = with_hashes(pipeline, locks.hashes)
            graph = _plan(pipeline, limit=limit, only=only, shard=shard, max_tasks=max_tasks)
            manifest_path = Path(manifest) if manifest else graph.output_dir / MANIFEST_NAME
            budget = _budget(
                graph, manifest_path, force=force, max_coins=max_coins, max_money=max_money
            )
            options = ExecuteOptions(
                concurrency=graph.concurrency,
                force=force,
                fail_fast=fail_fast,
                detach=detach,
                websocket=websocket,
                poll=poll or PollPolicy(),
                max_coins=max_coins,
                max_money=max_money,
                **dict(execute_options or {}),
            )
            folder = _Folder(server, emulator and client is None, overwrite, prune, task_cache)
            tally = _Tally(reporter)
            result = _execute(graph, keys, tally, options, manifest_path, shard, folder, budget)
        paid = [t for t in result.tasks if t.id in tally.followed]
        run_coins, run_money = sum(t.coins or 0.0 for t in paid), money_totals(paid)
        finished: dict[str, Any] = {}
        if result.status == "interrupted" or server_stopped(result):
            finished["hint"] = RESUME_HINT
        reporter.emit(
            "run_finished",
            status=result.status,
            counts=dict(result.counts),
            reused=tally.reused,
            coins_this_run=run_coins,
            coins_total=result.cost.get("coins", 0),
            money_this_run=run_money,
            money_total=dict(result.cost.get("money") or {}),
            manifest=str(manifest_path),
            server=dict(result.server or {}),
            errors=list(result.errors),
            **finished,
            maybe_twice=len(result.maybe_twice),
        )
    finally:
        reporter.close()
    elapsed = time.monotonic() - started
    return RunResult(result, manifest_path, elapsed, tally.reused, run_coins, run_money)


class _Remembered:
    """The client as the lock check uses it, leaving each workflow it fetches in the cache the
    overrides are checked against next: one ``getJsonApiFormat`` per workflow at start."""

    def __init__(self, client: Any, workflows: CachedWorkflows) -> None:
        self._client = client
        self._workflows = workflows

    def get_workflow_json(self, workflow_id: str) -> Any:
        fetched = self._client.get_workflow_json(workflow_id)
        self._workflows.remember(workflow_id, fetched)
        return fetched

    def app_fields(self, webapp_id: str) -> Any:
        return self._client.app_fields(webapp_id)


class _Tally:
    """Passes events on, keeping the number of tasks the run reused (from ``run_started``)
    and the tasks it created or followed to their end, whose coins this run paid."""

    def __init__(self, inner: Reporter) -> None:
        self._inner = inner
        self.shows_progress = getattr(inner, "shows_progress", True)
        self.reused = 0
        self.followed: set[str] = set()

    def emit(self, event: str, **fields: Any) -> None:
        if event == "run_started":
            self.reused = int(fields.get("reused", 0))
        elif event in ("task_submitted", "task_reattached"):
            self.followed.add(str(fields.get("task")))
        self._inner.emit(event, **fields)

    def close(self) -> None:
        self._inner.close()


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
    pipeline: Pipeline,
    *,
    limit: int | None,
    only: Sequence[str],
    shard: str | None,
    max_tasks: int | None = None,
) -> TaskGraph:
    from rhflow.planning.planner import MAX_TASKS, plan

    share = parse_shard(shard) if shard else None
    cap = MAX_TASKS if max_tasks is None else max_tasks
    graph = plan(pipeline, limit=limit, only=list(only) or None, max_tasks=cap)
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
    return _plan(locked(pipeline), limit=limit, only=only, shard=shard)


@dataclass(frozen=True, slots=True)
class _Folder:
    """Whose results the output folder will hold, and what the user allowed to be replaced."""

    server: str  # the API's base URL (compared by origin), or BUILTIN_EMULATOR
    builtin: bool  # the in-process emulator of --emulator
    overwrite: bool
    prune: bool
    cache: TaskCache | None = None


def _check_server(output_dir: Path, server: str) -> None:
    """Refuse, before anything is sent, a folder holding results of another server (a store
    that cannot be read is checked again once rebuilt, in ``_execute``)."""
    db = output_dir / STATE_DIR / DB_NAME
    if db.is_file():
        try:
            store = Store(db)
        except StateError:
            return
        with store:
            try:
                check_server(store, server, output_dir=output_dir)
            except StateError:
                return


def _located(step: Step) -> str:
    """``FILE:LINE:COL: steps.NAME: ``, the start of a message about ``step``."""
    return f"{step.where}: " if step.where else f"steps.{step.name}: "


def _require_workflows(pipeline: Pipeline, workflows: CachedWorkflows) -> None:
    """Stop before any create when a workflow's JSON could not be had because the key was
    refused, the server is down or the id is unknown: the run could only fail (and pay)."""
    for step in pipeline.steps:
        if step.target.kind != "workflow" or step.workflow_json is not None:
            continue
        problem = workflows.errors.get(step.target.id)
        if problem is None or not isinstance(problem, ApiError):
            continue
        if problem.retryable and not isinstance(problem, UnreachableError):
            continue  # a flaky answer: the run goes on unchecked, as validate says
        raise UsageError(
            f"{_located(step)}cannot check workflow {step.target.id}: {problem}; "
            "nothing was submitted"
        ) from problem


def _execute(
    graph: TaskGraph,
    keys: KeyPool,
    reporter: Reporter,
    options: ExecuteOptions,
    manifest_path: Path,
    shard: str | None,
    folder: _Folder,
    budget: dict[str, Any],
) -> Manifest:
    try:
        graph.output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise unusable(graph.output_dir, exc) from exc
    with RunLock(graph.output_dir), _opened(graph.output_dir, manifest_path, reporter) as store:
        records = _adopt(store, graph, store.tasks())
        if not options.force:
            check_server(store, folder.server, output_dir=graph.output_dir)
        if not folder.overwrite:
            check_pipeline(store, graph, _manifest_pipeline(manifest_path))
            check_overwrites(graph, records)
        if folder.prune:
            _prune(store, graph, records, reporter)
        emulated = folder.builtin
        if options.force or any(
            (r := records.get(t.id)) is None or r.status != "succeeded" for t in graph.tasks
        ):
            if not keys.checked:
                _precheck(keys, reporter)
            _warn_balance(keys.balance(), budget, reporter)
            emulated = emulated_server(keys) or emulated
        else:
            emulated = emulated or any(r.emulated for r in records.values())
        _remove_leftovers(graph.output_dir, manifest_path)
        journal = Journal(
            manifest_path,
            graph,
            store,
            shard=shard,
            server={"origin": origin_of(folder.server), "emulated": emulated},
        )
        journal.budget = budget
        store.set_meta("manifest", str(manifest_path.resolve()))
        store.set_meta("pipeline", graph.pipeline)
        status = "interrupted"
        try:
            status = execute(
                graph,
                keys.keys[0].client,
                store,
                journal,
                reporter,
                options=options,
                server=folder.server,
                cache=folder.cache,
                keys=keys,
            )
        except KeyboardInterrupt:
            raise
        except Exception:
            status = "failed"  # an unexpected error: the manifest says how far the run got
            raise
        finally:
            final = journal.finish(status)
        return final


@contextlib.contextmanager
def _opened(output_dir: Path, manifest_path: Path, reporter: Reporter) -> Iterator[Store]:
    """The folder's state store, rebuilt from the manifest if damaged (and said so)."""
    opened = open_state(output_dir, manifest_path)
    with opened.store as store:
        if opened.message:
            reporter.emit("run_warning", message=opened.message)
        store.reserve()  # room for the commit of a created task's id, should the disk fill
        yield store


def _adopt(store: Store, graph: TaskGraph, records: dict[str, TaskRecord]) -> dict[str, TaskRecord]:
    """Records kept under the ids tasks had before rhflow.lock, moved to their ids now."""
    adopted = adopt_earlier_ids(graph.tasks, records)
    if not adopted:
        return records
    store.save_many([record for _, record in adopted])
    store.forget([old for old, _ in adopted])
    return store.tasks()


def _manifest_pipeline(path: Path) -> str | None:
    """The pipeline named by the manifest already at ``path`` (None if none can be read)."""
    try:
        return read_manifest(path).pipeline if path.is_file() else None
    except StateError:
        return None


def _prune(
    store: Store, graph: TaskGraph, records: Mapping[str, TaskRecord], reporter: Reporter
) -> None:
    """--prune: list, then delete, the files of recorded tasks that left the plan."""
    stale = stale_outputs(records.values(), [t.id for t in graph.tasks])
    for item in stale:
        reporter.emit("output_pruned", task=item.task.id, step=item.task.step, path=str(item.path))
    prune(store, stale, graph.output_dir)


def _precheck(keys: KeyPool, reporter: Reporter) -> bool:
    """One accountStatus call per key before any create: the server answers and takes the
    key. Of a pool, a key refused or without balance is taken out (the others go on); with no
    key left, or a single key refused, nothing is sent. Returns whether the server said it is
    an emulator."""
    refused = []
    for key in keys.keys:
        try:
            account = keys.accounts[key.fingerprint] = key.client.account()
        except UnreachableError:
            raise
        except ApiError as err:
            if err.fatal:
                refused.append((key, str(err)))
            continue  # anything else (a busy or flaky server) is the executor's to retry
        if len(keys.keys) > 1 and no_balance(account):
            refused.append((key, "accountStatus shows no coins and no money left"))
    if len(refused) == len(keys.keys):
        reasons = "; ".join(
            why if len(refused) == 1 else f"{key.fingerprint}: {why}" for key, why in refused
        )
        raise UsageError(f"{reasons}; nothing was submitted")
    for key, why in refused:
        keys.retire_now(key, why)
        reporter.emit("run_warning", message=key_out_message(key.fingerprint, why))
    keys.checked = True
    return emulated_server(keys)


def emulated_server(keys: KeyPool) -> bool:
    """Some answer of the server said it is an emulator."""
    return any(bool(getattr(key.client, "emulated", False)) for key in keys.keys)


def _budget(
    graph: TaskGraph,
    manifest_path: Path,
    *,
    force: bool,
    max_coins: float | None,
    max_money: float | None = None,
) -> dict[str, Any]:
    """The run's estimate, --max-coins and --max-money, recorded in the manifest with what
    was spent; a run estimated over a cap stops here, before anything is submitted."""
    for name, cap in (("--max-coins", max_coins), ("--max-money", max_money)):
        if cap is not None and not (math.isfinite(cap) and cap > 0):
            raise UsageError(f"{name} must be more than 0, got {cap:g}")
    cost = estimate(graph, force=force, manifests=[manifest_path])
    over = None
    if max_coins is not None and cost.coins is not None and cost.coins > max_coins:
        over = (f"{cost.coins:g} coins", "--max-coins", max_coins)
    elif max_money is not None and cost.money is not None and cost.money > max_money:
        over = (money_text({cost.currency or "": cost.money}), "--max-money", max_money)
    if over is not None:
        figure, option, cap = over
        raise UsageError(
            f"this run is estimated at {figure}, over {option} {cap:g} ({cost.basis}); nothing "
            f"was submitted. Raise {option}, or run fewer tasks with --limit or --only"
        )
    return {
        "max_coins": max_coins,
        "estimate": cost.coins,
        "estimate_basis": cost.basis,
        "spent": 0.0,
        "stopped": False,
        "max_money": max_money,
        "estimate_money": None if cost.money is None else {cost.currency or "": cost.money},
        "spent_money": {},
    }


def _warn_balance(account: Account | None, budget: dict[str, Any], reporter: Reporter) -> None:
    """Say at the start when the key's balance (coins, or money) is lower than the run's
    estimate."""
    if account is None:
        return
    need, have = budget["estimate"], account.remain_coins
    money = budget.get("estimate_money") or {}
    need_money, have_money = money_amount(money) if money else None, account.remain_money
    if need_money is not None and have_money is not None and have_money < need_money:
        currency = account.currency or next(iter(money), "")
        shown, wanted = money_text({currency: have_money}), money_text({currency: need_money})
    elif need is not None and have is not None and have < need:
        shown, wanted = f"{have:g} coins", f"{need:g} coins"
    else:
        return
    reporter.emit(
        "run_warning",
        message=f"the key's balance ({shown}) is lower than this run's estimate "
        f"({wanted}); RunningHub refuses new tasks (416) when it runs out",
    )


def _remove_leftovers(output_dir: Path, manifest_path: Path) -> None:
    """Partial downloads and manifest temp files a killed run left (the lock is ours now)."""
    shutil.rmtree(output_dir / STAGING, ignore_errors=True)
    for temp in manifest_path.parent.glob(f".{manifest_path.name}.*.part"):
        temp.unlink(missing_ok=True)


@contextlib.contextmanager
def _pool(
    made: Client,
    api_key: str | Sequence[str] | None,
    *,
    single: bool,
    limits: Mapping[str, Any] | None = None,
) -> Iterator[list[Client]]:
    """``made`` and a client for each further key of the pool (``api_key`` or RH_API_KEY:
    several keys separated by commas, or a list); ``single`` (a client given, the in-process
    emulator): ``made`` alone."""
    if single:
        yield [made]
        return
    keys = split_keys(api_key if api_key is not None else os.environ.get("RH_API_KEY"))
    with contextlib.ExitStack() as stack:
        others = [
            stack.enter_context(
                Client(key, made.base_url, **(limits or {}), also_masked=keys)  # all of them
            )
            for key in keys[1:]
        ]
        yield [made, *others]


@contextlib.contextmanager
def open_client(
    client: Client | None,
    *,
    emulator: bool,
    base_url: str | None,
    api_key: str | Sequence[str] | None,
    limits: Mapping[str, Any] | None = None,
    pipeline: Pipeline | None = None,
) -> Iterator[Client]:
    """``client`` as given, else one for ``--emulator`` (an in-process emulator, serving what
    ``pipeline`` needs: :func:`emulated_workflows`) or for the key and base URL (from the
    options or RH_API_KEY / RH_BASE_URL), with ``limits`` (see ``download_limits``) applied to
    a client made here."""
    limits = limits or {}
    if client is not None:
        yield client
        return
    if not emulator:
        keys = split_keys(api_key) if api_key is not None else None
        joined = ",".join(keys) if keys else None
        with Client.from_env(api_key=joined, base_url=base_url, **limits) as made:
            yield made
        return
    from rhflow.emulator import Emulator, EmulatorConfig

    served = emulated_workflows(pipeline) if pipeline is not None else {}
    # A key that pays RH coins (as the costs, --max-coins and balance checks count), with an
    # enterprise key's 50 tasks at once so that runs keep their speed.
    config = EmulatorConfig(
        task_seconds=(1.0, 2.0), workflows=served, account="consumer", concurrency=50
    )
    with Emulator(config) as emu, Client(EMULATOR_KEY, emu.url, **limits) as made:
        yield made


def emulated_workflows(pipeline: Pipeline) -> dict[str, Mapping[str, Any]]:
    """What the built-in emulator must serve for ``pipeline`` to run as written: each step's
    ``workflow_file`` under its ``workflow`` id. A step that names a workflow or AI app the
    emulator cannot know (no ``workflow_file``) stops the run here, before any create."""
    from rhflow.emulator.workflows import BUILTIN_APPS, BUILTIN_WORKFLOWS

    served: dict[str, Mapping[str, Any]] = {}
    unknown = []
    for step in pipeline.steps:
        target = step.target
        if target.kind == "workflow" and step.workflow_json is not None:
            served[target.id] = step.workflow_json
        elif target.kind == "workflow" and target.id not in BUILTIN_WORKFLOWS:
            unknown.append(
                f"{_located(step)}workflow {target.id} is not known to the built-in emulator: add "
                "`workflow_file:` (the workflow's API-format JSON, exported from ComfyUI with "
                "'Save (API)') to the step, or serve it with `rhflow emulator --workflows DIR` "
                "(DIR holding <workflowId>.json) and run with --base-url instead of --emulator"
            )
        elif target.kind == "app" and target.id not in BUILTIN_APPS:
            unknown.append(
                f"{_located(step)}AI app {target.id} is not known to the built-in emulator, which "
                f"serves the app(s) {', '.join(sorted(BUILTIN_APPS))}; run it with a key "
                "against RunningHub"
            )
    if unknown:
        raise UsageError("\n".join(unknown) + "\nnothing was submitted")
    return served


def exit_code(manifest: Manifest) -> int:
    """0 every task succeeded, 130 interrupted, 3 the server stopped answering (the next run
    resumes), 1 otherwise."""
    if manifest.status == "succeeded":
        return 0
    if manifest.status == "interrupted":
        return 130
    if server_stopped(manifest):
        return 3
    return 1


def server_stopped(manifest: Manifest) -> bool:
    """The run was stopped because the server stopped answering."""
    return any(error.startswith(SERVER_STOPPED) for error in manifest.errors)

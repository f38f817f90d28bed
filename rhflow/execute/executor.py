"""The scheduler behind ``rhflow run``: one asyncio loop submits, follows, retries and downloads.

``concurrency`` worker coroutines take ready tasks from one line (``rhflow.execute.lineup``). A
worker holds its task from create until its files are on disk, so at most ``concurrency``
tasks are in flight. Blocking client calls run in a small thread pool; nothing sleeps in a
thread per task. Per task:

1. inputs: local files and upstream outputs uploaded once per content hash; deferred values
   rendered by the planner's ``resolve`` in a worker thread;
2. create: a busy answer (421/415/814) waits for a slot of ours to free (or a backoff) and
   resubmits, counting as neither failure nor retry; transient errors back off and retry; the
   remote taskId is committed to the state store as soon as create answers;
3. follow (``rhflow.execute.watching``): the task's WebSocket when one is offered (progress events
   too), confirmed by one ``outputs`` call; otherwise ``outputs`` polled at an adaptive
   interval (``PollPolicy``); ``timeout`` cancels the remote task;
4. outcome: FAILED is retried up to ``retries`` times; SUCCESS downloads every output
   (``rhflow.execute.downloads``), retried as downloads, never by running the paid task again.

Ctrl-C / SIGTERM and ``--fail-fast`` cancel the workers; a cancelled worker cancels its remote
task (unless ``--detach`` on Ctrl-C). Fatal API errors (bad key, no balance) stop submissions.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from rhflow.api.client import Client, TaskCreated, TaskOutputs
from rhflow.errors import RhflowError, StateError
from rhflow.execute.breaker import SERVER_STOPPED
from rhflow.execute.caching import CacheUse
from rhflow.execute.downloads import Downloads
from rhflow.execute.failures import Lost, TaskFailure, failure_of
from rhflow.execute.keys import KeyPool, PoolKey, key_out_message
from rhflow.execute.lineup import Lineup, Live
from rhflow.execute.remote import Remote
from rhflow.execute.resume import decide
from rhflow.execute.scheduling import ExecuteOptions
from rhflow.execute.transfers import UpstreamView
from rhflow.execute.watching import Watcher
from rhflow.model import PlannedTask, TaskGraph
from rhflow.progress import Reporter
from rhflow.record.cache import TaskCache
from rhflow.record.costs import money_amount, spend_text
from rhflow.record.journal import Journal, run_status
from rhflow.record.store import Store, TaskRecord

__all__ = ["ExecuteOptions", "Executor", "execute"]

log = logging.getLogger(__name__)


#: What a task whose create got no answer is told when the run stops: it was not cancelled.
NOT_CANCELLED = (
    "not cancelled: its create got no answer, so RunningHub may be running it under an id "
    "rhflow does not know (it is flagged 'may have been created twice')"
)


class Executor:
    """Runs one TaskGraph to the end against a Client, recording into a Store."""

    def __init__(
        self,
        graph: TaskGraph,
        client: Client,
        store: Store,
        journal: Journal,
        reporter: Reporter,
        *,
        options: ExecuteOptions,
        server: str,
        rand: Callable[[], float] = random.random,
        cache: TaskCache | None = None,
        keys: KeyPool | None = None,
    ) -> None:
        self.graph = graph
        self._server = server
        self._store = store
        self._journal = journal
        self._options = options
        self._reporter = reporter  # the runner's SafeReporter: a closed pipe cannot stop a run
        self._remote = Remote(
            client, store, journal, reporter, options=options, server=server, rand=rand, keys=keys
        )
        self._keys = self._remote.keys
        self._remote.breaker.on_trip = self._server_stopped
        self._held: dict[str, PoolKey] = {}  # task id -> the key whose slot it holds
        self._watcher = Watcher(self._remote, store, journal)
        self._downloads = Downloads(self._remote, graph.output_dir)
        self._cache = None
        if cache is not None:
            self._cache = CacheUse(cache, self._remote, self._downloads, graph.output_dir, server)
        self._line = Lineup()
        self._workers: list[asyncio.Task[None]] = []
        self._stop_reason: str | None = None
        self._to_save: list[TaskRecord] = []
        self._superseded: list[tuple[PlannedTask, str, str | None]] = []
        self._spent = 0.0  # coins of the tasks this run ran
        self._spent_money: dict[str, float] = {}  # their money, per currency
        self._followed: set[str] = set()  # tasks this run created or followed to their end
        self._over_budget = False  # a cap reached: no new create (tasks in flight end)
        self.interrupted = False

    # -- the run ----------------------------------------------------------------------------

    async def run(self) -> str:
        """Run every task; return the run status (succeeded, failed or interrupted)."""
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(self._options.threads, thread_name_prefix="rhflow")
        self._remote.bind(loop, pool)
        self._prepare()
        restore = self._install_signals(loop)
        writer = asyncio.create_task(self._journal_loop())
        try:
            await self._cancel_superseded()
            self._workers = [
                asyncio.create_task(self._worker()) for _ in range(max(1, self._keys.total_slots))
            ]
            await asyncio.gather(*self._workers, return_exceptions=True)
            self._budget_note()
        finally:
            restore()
            writer.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
            if self._stop_reason == SERVER_STOPPED:
                self._keys.abort()  # requests still waiting on the silent server end now
            await self._remote.close_session()
        return self._status()

    def _status(self) -> str:
        counts = self._journal.counts()
        return run_status(counts, interrupted=self.interrupted, errors=bool(self._journal.errors))

    async def _journal_loop(self) -> None:
        while True:
            await asyncio.sleep(self._journal_interval())
            if self._remote.dirty:
                self._remote.dirty = False
                try:
                    await asyncio.to_thread(self._journal.write)
                except StateError as err:  # a full disk: the store still has it all
                    if str(err) not in self._journal.errors:
                        self._journal.errors.append(str(err))
                        self._reporter.emit("run_error", message=str(err))

    def _journal_interval(self) -> float:
        """A few writes a second for a small run, one every 2 s for a large one; never more
        than a twentieth of the time spent writing, however large the manifest grows."""
        usual = max(0.2, min(2.0, 0.01 * len(self.graph.tasks)))
        return max(usual, 20 * self._journal.last_write)

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.interrupt)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - Windows
                pass

        def restore() -> None:
            for sig in installed:
                loop.remove_signal_handler(sig)

        return restore

    def interrupt(self) -> None:
        """Ctrl-C / SIGTERM: stop submitting and cancel what is in flight (unless detached).
        A second one stops at once, without waiting for the cancellations."""
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True
        self._reporter.emit("run_error", message="interrupted: stopping")
        self._stop("interrupted", cancel=True)

    def _server_stopped(self, message: str) -> None:
        """The server stopped answering (``rhflow.execute.breaker``): create nothing more and
        end every worker, leaving each task created as it is for the next run."""
        self._journal.errors.append(message)
        self._reporter.emit("run_error", message=message)
        self._stop(SERVER_STOPPED, cancel=True)

    def _stopped(self) -> bool:
        return self._stop_reason is not None or self._over_budget

    def _stop(self, reason: str, *, cancel: bool) -> None:
        if self._stop_reason is None:
            self._stop_reason = reason
        self._line.wake()
        if cancel:
            current = asyncio.current_task()
            for worker in self._workers:
                if worker is not current:
                    worker.cancel()

    # -- deciding what to run -----------------------------------------------------------------

    def _prepare(self) -> None:
        records = self._store.tasks()
        for task in self.graph.tasks:  # upstream tasks come first
            live = self._initial(task, records.get(task.id))
            self._line.add(live, lambda up: self._satisfied(up, records))
            if live.mode == "done":
                self._downloads.claim(live.record)
        self._store.save_many(self._to_save)
        self._to_save.clear()
        done = [live for live in self._line.tasks.values() if live.mode == "done"]
        self._reporter.emit(
            "run_started",
            pipeline=self.graph.pipeline,
            total=len(self.graph.tasks),
            to_run=self._line.remaining,
            reused=len(done),
            skipped=len(done),  # the same count, under its older name
            concurrency=self._keys.total_slots,
            output=str(self.graph.output_dir),
        )
        for live in done:
            self._reporter.emit(
                "task_skipped",
                task=live.task.id,
                step=live.task.step,
                reason="already succeeded; files intact",
            )
        self._line.start()
        for _, upstream in self._line.stuck():
            reason = f"upstream task {upstream} is not part of this run and has not succeeded"
            self._cancel(self._line.drop_downstream(upstream), reason)
        self._journal.write()

    def _satisfied(self, upstream: str, records: dict[str, TaskRecord]) -> bool:
        """Done in an earlier run (a task of this graph, or one outside it, e.g. another
        --only selection); tasks of this graph still to run are not."""
        if upstream in self._line.tasks:
            return self._line.done(upstream)
        record = records.get(upstream)
        return record is not None and record.status == "succeeded"

    def _initial(self, task: PlannedTask, record: TaskRecord | None) -> Live:
        decision = decide(task, record, force=self._options.force, server=self._server)
        if decision.changed:
            self._to_save.append(decision.record)
        if decision.supersedes:
            self._superseded.append((task, decision.supersedes, record.key if record else None))
        return Live(task, decision.record, mode=decision.mode)

    async def _cancel_superseded(self) -> None:
        """--force: cancel the remote tasks earlier runs left going, before running anew."""
        for task, remote_id, key in self._superseded:
            problem = await self._remote.cancel_quietly(remote_id, key)
            outcome = f"could not be cancelled ({problem})" if problem else "cancelled"
            message = f"--force: remote task {remote_id} of an earlier run {outcome}"
            self._remote.note(task, message)

    # -- one task ---------------------------------------------------------------------------

    async def _worker(self) -> None:
        while (live := await self._line.next(self._stopped)) is not None:
            try:
                await self._run_task(live)
            except Exception as exc:  # a local fault or a bug: fail this task, not the run
                trace = not isinstance(exc, (OSError, RhflowError))  # only a bug shows one
                log.error("task %s: %s", live.task.id, exc, exc_info=trace)
                detail = {"kind": "error", "message": f"{type(exc).__name__}: {exc}"}
                try:
                    self._fail(live.task, TaskFailure(detail, retry=False))
                except Exception as again:  # nothing can be recorded: stop instead of waiting
                    self._journal.errors.append(f"{type(again).__name__}: {again}")
                    self._stop("fatal", cancel=False)
            except asyncio.CancelledError:
                reason = self._abandon_reason()
                left = await self._remote.abandon(live.task, reason)
                if left is not None:
                    why = "--detach" if reason == "interrupted" else reason
                    self._remote.emit("task_detached", live.task, task_id=left, reason=why)
                elif self._unanswered(live.task):
                    self._remote.emit("note", live.task, message=f"{reason}: {NOT_CANCELLED}")
                else:
                    self._remote.emit("task_cancelled", live.task, reason=reason)
                raise

    def _unanswered(self, task: PlannedTask) -> bool:
        """A create of the task was sent and got no answer: it may exist remotely, under an id
        rhflow does not know, so nothing can cancel it."""
        record = self._remote.record(task)
        return (
            record is not None
            and not record.remote_id
            and bool(record.unanswered or record.sending)
        )

    def _abandon_reason(self) -> str:
        if self._stop_reason == SERVER_STOPPED:
            return SERVER_STOPPED
        if self._stop_reason == "interrupted":
            return "interrupted"
        return "stopped by --fail-fast after a failure"

    async def _run_task(self, live: Live) -> None:
        try:
            await self._run_task_held(live)
        finally:
            key = self._held.pop(live.task.id, None)
            if key is not None:
                await self._keys.release(key)

    async def _run_task_held(self, live: Live) -> None:
        task = live.task
        if await self._from_cache(live):
            self._finish(task, succeeded=True)
            return
        while True:
            try:
                outputs = await self._reach_end(live)
                if not outputs.succeeded:
                    raise TaskFailure(failure_of(outputs), retry=True)
                retries = 0 if live.stale else None
                await self._downloads.collect(task, outputs.outputs, retries=retries)
                self._finish(task, succeeded=True)
                if self._cache is not None:
                    await self._cache.put(task)
                return
            except Lost as lost:
                owner = self._store_record(task).key
                if live.mode != "fresh" and owner and not self._keys.has(owner):
                    # Asked with another key, the server cannot know the task: it may well
                    # still run under its own key, so creating it again could pay twice.
                    message = (
                        f"{lost}, asked with another key: the task was created with {owner}, "
                        "which this run was not given; run again with that key to pick it up"
                    )
                    self._fail(task, TaskFailure({"kind": "lost", "message": message},
                                                 retry=False, keep="running"))  # fmt: skip
                    return
                if live.mode != "fresh":  # an earlier run's task: submitting it is no retry
                    self._remote.note(task, f"{lost}; running the task again")
                    live.mode = "fresh"
                    continue
                failure = TaskFailure({"kind": "lost", "message": str(lost)}, retry=True)
            except TaskFailure as failed:
                failure = failed
                if failure.kind == "download" and live.stale:
                    live.stale, live.mode = False, "fresh"
                    self._remote.note(
                        task,
                        "the earlier outputs can no longer be downloaded; running the task again",
                    )
                    continue
            if not self._retry_allowed(live, failure):
                self._fail(task, failure)
                return
            await self._remote.retry_pause(task, live.run_attempts - 1, failure)
            live.mode = "fresh"

    async def _from_cache(self, live: Live) -> bool:
        """--cache: a task about to be created is taken from the cache if it is there."""
        if self._cache is None or live.mode != "fresh" or self._options.force:
            return False
        return await self._cache.take(live.task)

    async def _reach_end(self, live: Live) -> TaskOutputs:
        """Submit (or pick up) the task and wait until it is done remotely."""
        task = live.task
        if live.mode == "collect":
            live.mode = "follow"
            found, live.stale = await self._watcher.recover(task)
            if found is not None:
                return found
        if live.mode == "fresh":
            live.run_attempts += 1
            self._followed.add(task.id)
            needs = self._remote.upstream_views(task, self._upstream_records(task))
            created = await self._submit(task, needs)
            return await self._watcher.wait_end(task, created.net_wss_url, fresh=True)
        live.run_attempts = max(live.run_attempts, 1)  # an earlier run created it: one attempt
        self._followed.add(task.id)
        self._remote.emit(
            "task_reattached",
            task,
            task_id=self._store_record(task).remote_id,
            params=dict(task.params),
        )
        return await self._watcher.wait_end(task, None, fresh=False)

    async def _submit(self, task: PlannedTask, needs: dict[str, UpstreamView]) -> TaskCreated:
        """Create the task with a key of the pool that has a free slot; a key the server
        refuses (bad key, no balance) is taken out and the task goes to another."""
        while True:
            held = self._held.pop(task.id, None)
            if held is not None:
                await self._keys.release(held)
            key = await self._keys.acquire()
            if key is None:  # every key is out: the last refusal is the run's fatal error
                raise TaskFailure(
                    {"kind": "api_error", "message": "every API key of the pool was refused"},
                    retry=False,
                    fatal=True,
                )
            self._held[task.id] = key
            try:
                return await self._remote.submit(task, needs, key)
            except TaskFailure as failure:
                if not failure.fatal or len(self._keys.active) < 2 or not _key_refused(failure):
                    raise
                message = key_out_message(key.fingerprint, failure.message)
                if await self._keys.retire(key, failure.message):
                    self._reporter.emit("run_warning", message=message)
                self._remote.note(task, f"{message}; submitting with another key")

    def _upstream_records(self, task: PlannedTask) -> dict[str, TaskRecord]:
        found = {up: self._store.get(up) for up in task.upstream_ids}
        return {up: record for up, record in found.items() if record is not None}

    def _store_record(self, task: PlannedTask) -> TaskRecord:
        record = self._store.get(task.id)
        assert record is not None
        return record

    def _retry_allowed(self, live: Live, failure: TaskFailure) -> bool:
        if not failure.retry or self._stopped():
            return False
        return live.run_attempts <= live.task.retries

    def _fail(self, task: PlannedTask, failure: TaskFailure) -> None:
        self._remote.record_failure(task, failure)
        self._reporter.emit(
            "task_failed",
            task=task.id,
            step=task.step,
            task_id=self._store_record(task).remote_id,
            reason=failure.message,
            kind=failure.kind,
        )
        if failure.fatal and failure.message not in self._journal.errors:
            self._journal.errors.append(failure.message)
            self._reporter.emit("run_error", message=f"{failure.message}; stopping the run")
            self._stop("fatal", cancel=False)
        self._finish(task, succeeded=False)
        if self._options.fail_fast and self._stop_reason is None:
            self._stop("fail_fast", cancel=True)

    def _finish(self, task: PlannedTask, *, succeeded: bool) -> None:
        self._count_coins(task)
        self._remote.slot_freed()
        self._remote.dirty = True
        dropped = self._line.ended(task.id, succeeded=succeeded)
        self._cancel(dropped, f"upstream task {task.id[:10]} failed")

    def _count_coins(self, task: PlannedTask) -> None:
        """Add the task's coins and money to the run's spend; at --max-coins or --max-money,
        submit nothing more (the tasks in flight finish)."""
        record = self._store.get(task.id)
        if record is None or task.id not in self._followed:
            return  # only downloaded here: an earlier run paid for it
        self._spent += record.coins or 0.0
        if record.money is not None:
            key = record.currency or ""
            self._spent_money[key] = round(self._spent_money.get(key, 0.0) + record.money, 6)
        budget = self._journal.budget
        if budget is not None:
            budget["spent"] = self._spent
            budget["spent_money"] = dict(self._spent_money)
        if self._cap_reached() and not self._over_budget:
            self._over_budget = True
            self._line.wake()

    def _cap_reached(self) -> str | None:
        """``--max-coins N`` or ``--max-money N`` when this run's spend reached it."""
        coins, money = self._options.max_coins, self._options.max_money
        if coins is not None and self._spent >= coins:
            return f"--max-coins {coins:g}"
        if money is not None and money_amount(self._spent_money) >= money:
            return f"--max-money {money:g}"
        return None

    def _budget_note(self) -> None:
        """After the run: say so when a cap left tasks unsubmitted."""
        if not self._over_budget or self._line.remaining <= 0 or self._stop_reason:
            return
        cap = self._cap_reached() or "the cap"
        message = (
            f"{cap} reached ({spend_text(self._spent, self._spent_money)} spent by this run): "
            f"{self._line.remaining} tasks not submitted; run again with a higher "
            f"{cap.split()[0]} to finish them"
        )
        self._journal.errors.append(message)
        if self._journal.budget is not None:
            self._journal.budget["stopped"] = True
        self._reporter.emit("run_error", message=message)

    def _cancel(self, tasks: list[Live], reason: str) -> None:
        """Record tasks that cannot run because an upstream task failed or is missing."""
        for live in tasks:
            failure = TaskFailure({"kind": "upstream", "message": reason}, retry=False)
            self._remote.record_failure(live.task, failure, status="cancelled")
            self._reporter.emit(
                "task_cancelled", task=live.task.id, step=live.task.step, reason=reason
            )


def _key_refused(failure: TaskFailure) -> bool:
    """The server refused this key (bad, unauthorised, no balance): another key may do. Not a
    full disk, an unrecorded create, an unreachable server or a foreign redirect (code 0)."""
    return failure.detail.get("kind") == "api_error" and failure.detail.get("code") not in (
        None,
        0,
    )


def execute(
    graph: TaskGraph,
    client: Client,
    store: Store,
    journal: Journal,
    reporter: Reporter,
    *,
    options: ExecuteOptions,
    server: str,
    rand: Callable[[], float] = random.random,
    cache: TaskCache | None = None,
    keys: KeyPool | None = None,
) -> str:
    """Run the graph on a fresh event loop; return the run status."""
    executor = Executor(
        graph,
        client,
        store,
        journal,
        reporter,
        options=options,
        server=server,
        rand=rand,
        cache=cache,
        keys=keys,
    )
    return asyncio.run(executor.run())

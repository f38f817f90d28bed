"""A task's dealings with RunningHub, for the executor: inputs, create, cancel, records.

Everything here runs on the executor's event loop; blocking client calls go to its thread pool
(``Remote.call``), which ``rhflow.execute.watching`` (following a task to its end) and
``rhflow.execute.downloads`` (its files) use too. Each step records into the state store as soon
as it knows something: the remote taskId the moment create answers, the failure when a task ends.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from rhflow.api.client import BUILTIN_EMULATOR, TaskCreated, TaskOutputs
from rhflow.errors import ApiError, BadResponseError, RhflowError, TransportError, UsageError
from rhflow.execute.breaker import SERVER_STOPPED, Breaker
from rhflow.execute.failures import TaskFailure, api_failure
from rhflow.execute.keys import KeyPool, PoolKey
from rhflow.execute.scheduling import ExecuteOptions
from rhflow.execute.transfers import LazyUploads, UploadCache, UpstreamView
from rhflow.model import PlannedTask
from rhflow.progress import Reporter
from rhflow.record.journal import Journal
from rhflow.record.store import OutputRecord, Store, TaskRecord

if TYPE_CHECKING:
    import aiohttp

T = TypeVar("T")


#: Why a create the loop stopped waiting for counts as unanswered.
STOPPED_WAITING = "the run stopped before the create was answered"

UNANSWERED_NOTE = (
    "a create request got no answer ({err}); RunningHub may have made the task anyway, under "
    "an id rhflow cannot learn: if the task is created again, it may have been created twice"
)


def unanswered(err: ApiError) -> bool:
    """The create may have reached the server and made the task, but no answer came, or none
    that could be read (cut short, too large, not JSON): the task may exist all the same."""
    if isinstance(err, TransportError):
        return err.sent
    return isinstance(err, BadResponseError)


def active_status(remote_status: str) -> str:
    """The store status of a remote task not done yet: "queued" while QUEUED, else "running"."""
    return "queued" if remote_status.upper() == "QUEUED" else "running"


class Remote:
    """Inputs, create, cancel and the shared plumbing (pool, store, events) of one run."""

    def __init__(
        self,
        client: Any,
        store: Store,
        journal: Journal,
        reporter: Reporter,
        *,
        options: ExecuteOptions,
        server: str,
        rand: Callable[[], float],
        keys: KeyPool | None = None,
    ) -> None:
        self.keys = keys if keys is not None else KeyPool([client], options.concurrency)
        self.client = client
        self._store = store
        self._journal = journal
        self._reporter = reporter
        self.shows_progress: bool = getattr(reporter, "shows_progress", True)
        self.options = options
        self.rand = rand
        self._server = server
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.started: dict[str, float] = {}  # task id -> monotonic time of its create
        self.dirty = False
        self.no_more_creates: str | None = None  # why, once the state cannot be written
        #: Trips when the server stopped answering; the executor sets its ``on_trip``.
        self.breaker = Breaker(options.silent_requests, options.silent_seconds)
        self._uploads = UploadCache(
            self._upload,
            store,
            getattr(client, "base_url", server),  # uploads live on this very process/port
            backoff=options.api_backoff,
            retries=options.api_retries,
            rand=rand,
            on_upload=self._uploaded,
            give_up=lambda: self.breaker.tripped is not None,
        )

    def bind(self, loop: asyncio.AbstractEventLoop, pool: ThreadPoolExecutor) -> None:
        self._loop, self._pool = loop, pool
        self._session: aiohttp.ClientSession | None = None
        self._opening: asyncio.Future[None] | None = None
        self._calls: dict[int, Any] = {}  # id(client) -> its calls on the loop

    def open_session(self) -> None:
        """Start loading aiohttp (a fifth of a second of CPU) in a thread; ``session`` waits
        for it. ``calls`` starts it at the first poll or download, not before: the first
        creates of a run go out first, the blocking way, instead of sharing the CPU with it."""
        if self._opening is None:
            self._opening = asyncio.ensure_future(self._open())

    async def _open(self) -> None:
        await self._loop.run_in_executor(None, importlib.import_module, "aiohttp")
        from rhflow.api.aio import new_session

        self._session = new_session()

    async def session(self) -> aiohttp.ClientSession:
        """The run's session, for WebSockets and the calls of ``calls`` (opened on first use
        if not started yet)."""
        self.open_session()
        assert self._opening is not None
        await asyncio.shield(self._opening)
        assert self._session is not None
        return self._session

    async def calls(self, client: Any, *, create: bool = False) -> Any:
        """``client``'s create, outputs and download calls as coroutines over the run's
        session (``rhflow.api.aio``). A client given a session of the caller's (its adapters,
        proxies, hooks), or that is no :class:`rhflow.api.client.Client`, has its own calls
        run in the pool instead; so do the calls made while aiohttp still loads, which do
        not wait for it. Any call but a ``create`` starts loading it (``open_session``)."""
        found = self._calls.get(id(client))
        if found is None:
            from rhflow.api.aio import AsyncCalls
            from rhflow.api.client import Client

            if not isinstance(client, Client) or not client.owns_session:
                found = _Pooled(client, self)
            elif self._session is None:
                if not create:
                    self.open_session()
                return _Pooled(client, self)
            else:
                found = AsyncCalls(client, self._session, self._pool)
            self._calls[id(client)] = found
        return found

    async def close_session(self) -> None:
        if self._opening is not None:
            await asyncio.gather(self._opening, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def _upload(self, path: Path) -> str:
        """In a pool thread: upload ``path``, telling the breaker (on the loop) how it went."""
        sent = time.monotonic()
        try:
            name = str(self.keys.primary.upload(path).file_name)
        except ApiError as err:
            self._loop.call_soon_threadsafe(self.breaker.observe, err, sent)
            raise
        self._loop.call_soon_threadsafe(self.breaker.answered)
        return name

    def _uploaded(self, path: Path, sha256: str, name: str) -> None:
        self._loop.call_soon_threadsafe(
            functools.partial(
                self._reporter.emit, "upload", path=str(path), sha256=sha256, file_name=name
            )
        )

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self._loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    async def ask(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """An API request (a coroutine function of ``calls``), whether it got an answer told
        to the breaker."""
        sent = time.monotonic()
        try:
            answer = await fn(*args)
        except ApiError as err:
            self.breaker.observe(err, sent)
            raise
        self.breaker.answered()
        return answer

    def retrying(self, err: ApiError, errors: int) -> bool:
        """Whether a request that failed with ``err`` after ``errors`` earlier failures is
        tried again (a transient error, within the retries). Once the server stopped
        answering, the task's worker is cancelled here, as the executor cancels the others:
        the task is left as it is for the next run."""
        if self.breaker.tripped:
            raise asyncio.CancelledError()
        return err.retryable and errors < self.options.api_retries

    def emit(self, event: str, task: PlannedTask, **fields: Any) -> None:
        self._reporter.emit(event, task=task.id, step=task.step, **fields)

    def record(self, task: PlannedTask) -> TaskRecord | None:
        return self._store.get(task.id)

    def save(self, task: PlannedTask, **changes: Any) -> TaskRecord:
        self.dirty = True
        return self._store.update(task.id, **changes)

    def note(self, task: PlannedTask, message: str) -> None:
        record = self._store.get(task.id)
        notes = record.notes if record else ()
        self.save(task, notes=(*notes, message))
        self.emit("note", task, message=message)

    # -- inputs and create ------------------------------------------------------------------

    def upstream_views(
        self, task: PlannedTask, records: Mapping[str, TaskRecord]
    ) -> dict[str, UpstreamView]:
        views = {}
        for step, upstream_id in task.needs.items():
            rec = records[upstream_id]
            files = tuple((Path(o.path), o.sha256) for o in rec.outputs if o.path)
            views[step] = UpstreamView(
                outputs=LazyUploads(files, self._uploads),
                urls=tuple(o.url or "" for o in rec.outputs),
                files=tuple(path for path, _ in files),
                params=rec.params,
                task_id=rec.remote_id,
            )
        return views

    async def _node_info_list(
        self, task: PlannedTask, needs: Mapping[str, UpstreamView]
    ) -> list[dict[str, Any]]:
        try:
            if task.deferred:
                from rhflow.planning.planner import resolve

                entries = await self.call(resolve, task, needs)
            else:
                entries = [dict(e) for e in task.node_info_list]
            for file_input in task.files:
                name = await self.call(self._uploads.name_for, file_input.path, file_input.sha256)
                entries[file_input.index] = {**entries[file_input.index], "fieldValue": name}
        except ApiError as err:
            raise api_failure(err, "uploading an input failed") from err
        except (RhflowError, OSError) as err:
            raise TaskFailure(
                {"kind": "error", "message": f"preparing inputs: {err}"}, retry=False
            ) from err
        return [dict(e) for e in entries]

    def client_for(self, task: PlannedTask) -> Any:
        """The client of the key that created ``task`` (following, cancelling it)."""
        record = self._store.get(task.id)
        return self.keys.client_for(record.key if record else None)

    async def submit(
        self, task: PlannedTask, needs: Mapping[str, UpstreamView], key: PoolKey | None = None
    ) -> TaskCreated:
        """Create the remote task with ``key`` (the pool's first by default), waiting out busy
        answers and retrying transient errors."""
        entries = await self._node_info_list(task, needs)
        key = key or self.keys.keys[0]
        busy = errors = 0
        while True:
            if self.no_more_creates:
                detail = {"kind": "error", "message": self.no_more_creates}
                raise TaskFailure(detail, retry=False, fatal=True)
            sent = time.monotonic()
            try:
                created = await self._create_recorded(task, entries, key)
                self.breaker.answered()
                return created
            except ApiError as err:
                self.breaker.observe(err, sent)
                if unanswered(err):
                    self.emit("note", task, message=UNANSWERED_NOTE.format(err=err))
                again = self.retrying(err, errors)
                if err.busy:
                    delay = self.options.busy_backoff.delay(busy, self.rand)
                    busy += 1
                    self.emit("task_busy", task, reason=str(err), delay=delay)
                    await self._wait_for_slot(delay)
                    continue
                if again:
                    await self.api_pause(task, errors, err, "submitting")
                    errors += 1
                    continue
                raise api_failure(err, "submitting the task failed") from err

    async def _create_recorded(
        self, task: PlannedTask, entries: list[dict[str, Any]], key: PoolKey
    ) -> TaskCreated:
        future = asyncio.ensure_future(self._create_and_record(task, entries, key))
        try:
            created, attempts = await asyncio.shield(future)
        except asyncio.CancelledError:
            # The request is in the air: let its answer be recorded before stopping.
            try:
                created, attempts = await asyncio.shield(future)
            except ApiError:
                raise asyncio.CancelledError() from None
            self._created(task, created, attempts)
            raise
        self._created(task, created, attempts)
        return created

    async def _create_and_record(
        self, task: PlannedTask, entries: list[dict[str, Any]], key: PoolKey
    ) -> tuple[TaskCreated, int]:
        """Mark the create as sent, create, then commit the remote id (and clear the mark)
        as soon as the answer is read. A run killed in between leaves the mark, so the next
        run knows the task may exist remotely under an id nobody knows; a create whose
        answer never comes is counted the same way."""
        self._store.update(task.id, sending=time.time())  # nothing is sent if this fails
        try:
            created = await self._create(await self.calls(key.client, create=True), task, entries)
        except ApiError as err:
            self._create_failed(task, err)
            raise
        except UsageError:  # the request could not even be built: nothing was sent
            self._store.update(task.id, sending=None)
            raise
        except asyncio.CancelledError:  # the loop is closing with the request in the air
            self._create_failed(task, TransportError(STOPPED_WAITING))
            raise
        try:
            return self._record_created(task, created, entries, key)
        except RhflowError as err:
            # A full disk: give back the room kept for this very commit, and create no more.
            self.no_more_creates = f"{err}; no more tasks are created"
            if not self._store.release_reserve():
                raise await self._unrecorded(created.task_id, err, key.client) from err
        try:
            return self._record_created(task, created, entries, key)
        except RhflowError as err:
            raise await self._unrecorded(created.task_id, err, key.client) from err

    def _record_created(
        self,
        task: PlannedTask,
        created: TaskCreated,
        entries: list[dict[str, Any]],
        key: PoolKey,
    ) -> tuple[TaskCreated, int]:
        record = self._store.get(task.id)
        attempts = (record.attempts if record else 0) + 1
        self._store.update(
            task.id,
            remote_id=created.task_id,
            server=self._server,
            emulated=self._server == BUILTIN_EMULATOR or bool(getattr(key.client, "emulated", 0)),
            key=key.fingerprint,
            status=active_status(created.status),
            attempts=attempts,
            node_info_list=tuple(entries),
            submitted_at=time.time(),
            finished_at=None,
            failure=None,
            outputs=(),
            sending=None,
        )
        return created, attempts

    def _create_failed(self, task: PlannedTask, err: ApiError) -> None:
        record = self._store.get(task.id)
        if record is None:
            return
        if not unanswered(err):
            self._store.update(task.id, sending=None)
            return
        self._store.update(
            task.id,
            sending=None,
            unanswered=record.unanswered + 1,
            notes=(*record.notes, UNANSWERED_NOTE.format(err=err)),
        )

    async def _unrecorded(self, remote_id: str, err: object, client: Any) -> TaskFailure:
        """The task was created but its id cannot be recorded (a full disk): cancel it, so
        that the next run, which will create it again, does not pay for it twice."""
        try:
            await self.call(client.cancel, remote_id)
            outcome = "it was cancelled so that it is not paid for twice"
        except ApiError as problem:
            outcome = f"cancelling it failed ({problem}): it may be paid for twice"
        detail = {
            "kind": "error",
            "message": f"task created as {remote_id}, but its record could not be written "
            f"({err}); {outcome}",
        }
        return TaskFailure(detail, retry=False, fatal=True)

    async def _create(
        self, calls: Any, task: PlannedTask, entries: list[dict[str, Any]]
    ) -> TaskCreated:
        """Create ``task`` through ``calls`` (see ``calls``)."""
        target = task.target
        if target.kind == "app":
            return await calls.run_ai_app(
                target.id, entries, webhook_url=task.webhook_url, instance_type=task.instance_type
            )
        if target.kind == "quick_app":
            return await calls.run_quick_ai_app(target.id, target.quick_create_code or "", entries)
        workflow = _with_values(target.workflow_json, entries) if target.workflow_json else None
        return await calls.create_task(
            target.id,
            entries,
            workflow=workflow,
            add_metadata=task.add_metadata,
            webhook_url=task.webhook_url,
            instance_type=task.instance_type,
            use_personal_queue=task.use_personal_queue,
        )

    def _created(self, task: PlannedTask, created: TaskCreated, attempts: int) -> None:
        self.dirty = True
        self.started[task.id] = time.monotonic()
        status = active_status(created.status)
        self.emit(
            "task_submitted",
            task,
            task_id=created.task_id,
            attempt=attempts,
            status=status,
            params=dict(task.params),
        )

    async def _wait_for_slot(self, delay: float) -> None:
        """Wait until one of our tasks ends (first in line first) or ``delay`` passes."""
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), delay)
        except asyncio.TimeoutError:
            pass
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def slot_freed(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def api_pause(self, task: PlannedTask, attempt: int, err: ApiError, doing: str) -> None:
        delay = self.options.api_backoff.delay(attempt, self.rand)
        self.emit("api_retry", task, reason=f"{doing}: {err}", delay=delay)
        await asyncio.sleep(delay)

    async def retry_pause(self, task: PlannedTask, attempt: int, failure: TaskFailure) -> None:
        delay = self.options.retry_backoff.delay(attempt, self.rand)
        # The remote task has ended: nothing to cancel or re-attach to if the run stops now.
        self.save(task, status="pending", failure=failure.detail)
        self.emit("task_retry", task, reason=failure.message, delay=delay, attempt=attempt + 1)
        await asyncio.sleep(delay)

    async def cancel_quietly(self, remote_id: str, key: str | None = None) -> str | None:
        """Cancel with the key that created the task (``key``: its fingerprint)."""
        client = self.keys.client_for(key)
        try:
            await asyncio.wait_for(self.call(client.cancel, remote_id), 15.0)
        except (ApiError, asyncio.TimeoutError) as err:
            return str(err) or "no answer"
        return None

    # -- endings ----------------------------------------------------------------------------

    def record_failure(
        self, task: PlannedTask, failure: TaskFailure, *, status: str | None = None
    ) -> None:
        record = self._store.get(task.id)
        if record is None:
            record = TaskRecord(task.id, task.step, "pending", params=dict(task.params))
            self._store.save(record)
        if status is None:
            status = failure.keep or "failed"
        self.save(task, status=status, failure=failure.detail, finished_at=time.time())

    async def abandon(self, task: PlannedTask, reason: str) -> str | None:
        """The run stops while this task is in flight: cancel it remotely, or leave it running
        for the next run with --detach (then its remote id is returned)."""
        record = self._store.get(task.id)
        if (
            record is None
            or not record.remote_id
            or record.status not in ("submitted", "queued", "running")
        ):
            return None
        if reason == SERVER_STOPPED or (reason == "interrupted" and self.options.detach):
            why = "--detach" if reason == "interrupted" else reason
            notes = (*record.notes, f"left running remotely ({why}) as task {record.remote_id}")
            self.save(task, notes=notes)  # the caller says so, in one line per task
            return record.remote_id
        problem = await self.cancel_quietly(record.remote_id, record.key)
        after = await self._state_after_cancel(record.remote_id, record.key)
        if after is not None and after.succeeded and after.outputs:
            self._keep_finished(task, record.remote_id, after)
            return None
        if problem and (after is None or not after.done):
            # The cancel may not have reached it: the next run follows it, never re-creates it.
            message = (
                f"{reason}; cancelling remote task {record.remote_id} failed: {problem}; the "
                "next run follows it instead of creating it again"
            )
            self.save(task, failure={"kind": "interrupted", "message": message})
            return None
        message = f"{reason}; remote task {record.remote_id} cancelled"
        if problem:
            message = f"{reason}; remote task {record.remote_id} had ended ({problem})"
        notes = (
            *record.notes,
            f"remote task {record.remote_id} was cancelled ({reason}) before it finished; "
            "RunningHub may bill the time it ran; a later run creates the task again",
        )
        self.save(
            task,
            notes=notes,
            status="cancelled",
            finished_at=time.time(),
            failure={
                "kind": "interrupted" if reason == "interrupted" else "cancelled",
                "message": message,
            },
        )
        return None

    async def _state_after_cancel(
        self, remote_id: str, key: str | None = None
    ) -> TaskOutputs | None:
        """The remote task's state once cancelled (None when the server does not say), asked
        with the key that created it."""
        client = self.keys.client_for(key)
        try:
            return await asyncio.wait_for(self.call(client.outputs, remote_id), 15.0)
        except (ApiError, asyncio.TimeoutError):
            return None

    def _keep_finished(self, task: PlannedTask, remote_id: str, outputs: TaskOutputs) -> None:
        """The task had finished before the cancel took effect: it is paid for, so its files
        are kept for the next run to download instead of creating it again."""
        links = tuple(
            OutputRecord(i, o.node_id, o.file_url or None, o.file_type)
            for i, o in enumerate(outputs.outputs)
        )
        cost = next((o.task_cost_time for o in outputs.outputs if o.task_cost_time), None)
        self.save(
            task,
            status="downloading",
            outputs=links,
            cost_time=cost,
            **self.keys.charged(outputs.outputs, self.record(task)),
            failure={
                "kind": "interrupted",
                "message": f"interrupted after remote task {remote_id} had finished; the next "
                "run downloads its files (it is not created again)",
            },
        )


class _Pooled:
    """The calls of a client that is not rhflow's own (a test's, a wrapper): each run as it is,
    in the run's thread pool."""

    def __init__(self, client: Any, remote: Remote) -> None:
        self._client = client
        self._remote = remote

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self._client, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self._remote.call(method, *args, **kwargs)

        return call

    async def download(
        self, url: str, dest: Path, *, then: Callable[[Any], Any] | None = None
    ) -> Any:
        """The client's download, and ``then`` of its result in the same thread."""

        def both() -> Any:
            result = self._client.download(url, dest)
            return result if then is None else then(result)

        return await self._remote.call(both)


def _with_values(graph: Mapping[str, Any], entries: list[dict[str, Any]]) -> str:
    """The workflow JSON to send, with the task's node_info_list values written into its
    inputs: sources disagree on whether RunningHub applies nodeInfoList on top of ``workflow``
    or ignores it, and the task runs with its own values either way."""
    nodes = json.loads(json.dumps(graph))
    for entry in entries:
        node = nodes.get(str(entry.get("nodeId")))
        if isinstance(node, dict) and isinstance(node.get("inputs"), dict):
            node["inputs"][str(entry.get("fieldName"))] = entry.get("fieldValue")
    return json.dumps(nodes)

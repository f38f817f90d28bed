"""One task's dealings with RunningHub, for the executor: inputs, create, follow, cancel.

Everything here runs on the executor's event loop; blocking client calls go to its thread pool
(``Remote.call``). Each step records into the state store as soon as it knows something: the
remote taskId right after create answers, the remote state while it runs, the failure when it
ends. A task's failure is a ``TaskFailure`` carrying a structured reason; ``Lost`` means the
server no longer knows the task. Downloads are in ``rhflow.downloads``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import statistics
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from rhflow.client import Output, TaskCreated, TaskOutputs
from rhflow.errors import ApiError, RhflowError, TaskNotFoundError
from rhflow.failures import Lost, TaskFailure, api_failure
from rhflow.follow import ProgressEvent, follow
from rhflow.journal import Journal
from rhflow.model import PlannedTask
from rhflow.progress import Reporter
from rhflow.scheduling import ExecuteOptions
from rhflow.store import Store, TaskRecord
from rhflow.transfers import LazyUploads, UploadCache, UpstreamView

T = TypeVar("T")


class Remote:
    """Submit, follow, download and cancel, for the tasks of one run."""

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
    ) -> None:
        self.client = client
        self._store = store
        self._journal = journal
        self._reporter = reporter
        self.options = options
        self.rand = rand
        self._server = server
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._durations: deque[float] = deque(maxlen=20)
        self._started: dict[str, float] = {}
        self.dirty = False
        self._uploads = UploadCache(
            lambda path: str(client.upload(path).file_name),
            store,
            server,
            backoff=options.api_backoff,
            retries=options.api_retries,
            rand=rand,
            on_upload=self._uploaded,
        )

    def bind(
        self,
        loop: asyncio.AbstractEventLoop,
        pool: ThreadPoolExecutor,
        session: aiohttp.ClientSession,
    ) -> None:
        self._loop, self._pool, self._session = loop, pool, session

    def _uploaded(self, path: Path, sha256: str, name: str) -> None:
        self._loop.call_soon_threadsafe(
            functools.partial(
                self._reporter.emit, "upload", path=str(path), sha256=sha256, file_name=name
            )
        )

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self._loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def emit(self, event: str, task: PlannedTask, **fields: Any) -> None:
        self._reporter.emit(event, task=task.id, step=task.step, **fields)

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
            files = tuple(Path(o.path) for o in rec.outputs if o.path)
            views[step] = UpstreamView(
                outputs=LazyUploads(files, self._uploads),
                urls=tuple(o.url or "" for o in rec.outputs),
                files=files,
                params=rec.params,
                task_id=rec.remote_id,
            )
        return views

    async def _node_info_list(
        self, task: PlannedTask, needs: Mapping[str, UpstreamView]
    ) -> list[dict[str, Any]]:
        try:
            if task.deferred:
                from rhflow.planner import resolve

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

    async def submit(self, task: PlannedTask, needs: Mapping[str, UpstreamView]) -> TaskCreated:
        """Create the remote task, waiting out busy answers and retrying transient errors."""
        entries = await self._node_info_list(task, needs)
        busy = errors = 0
        while True:
            try:
                return await self._create_recorded(task, entries)
            except ApiError as err:
                if err.busy:
                    delay = self.options.busy_backoff.delay(busy, self.rand)
                    busy += 1
                    self.emit("task_busy", task, reason=str(err), delay=delay)
                    await self._wait_for_slot(delay)
                    continue
                if err.retryable and errors < self.options.api_retries:
                    await self._api_pause(task, errors, err, "submitting")
                    errors += 1
                    continue
                raise api_failure(err, "submitting the task failed") from err

    async def _create_recorded(
        self, task: PlannedTask, entries: list[dict[str, Any]]
    ) -> TaskCreated:
        future = self._loop.run_in_executor(
            self._pool, functools.partial(self._create_and_record, task, entries)
        )
        try:
            created, attempts = await asyncio.shield(future)
        except asyncio.CancelledError:
            # The request is in the air: let its answer be recorded before stopping.
            try:
                created, attempts = await future
            except ApiError:
                raise asyncio.CancelledError() from None
            self._created(task, created, attempts)
            raise
        self._created(task, created, attempts)
        return created

    def _create_and_record(
        self, task: PlannedTask, entries: list[dict[str, Any]]
    ) -> tuple[TaskCreated, int]:
        """In a pool thread: create, then commit the remote id at once, without waiting for
        the event loop (this is the window in which a crash could lose a created task)."""
        created = self._create(task, entries)
        record = self._store.get(task.id)
        attempts = (record.attempts if record else 0) + 1
        self._store.update(
            task.id,
            remote_id=created.task_id,
            server=self._server,
            status="queued" if created.status.upper() == "QUEUED" else "running",
            attempts=attempts,
            node_info_list=tuple(entries),
            submitted_at=time.time(),
            finished_at=None,
            failure=None,
            outputs=(),
        )
        return created, attempts

    def _create(self, task: PlannedTask, entries: list[dict[str, Any]]) -> TaskCreated:
        target = task.target
        if target.kind == "app":
            return self.client.run_ai_app(
                target.id, entries, webhook_url=task.webhook_url, instance_type=task.instance_type
            )
        if target.kind == "quick_app":
            return self.client.run_quick_ai_app(target.id, target.quick_create_code or "", entries)
        workflow = json.dumps(target.workflow_json) if target.workflow_json else None
        return self.client.create_task(
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
        self._started[task.id] = time.monotonic()
        status = "queued" if created.status.upper() == "QUEUED" else "running"
        self.emit("task_submitted", task, task_id=created.task_id, attempt=attempts, status=status)

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

    async def _api_pause(self, task: PlannedTask, attempt: int, err: ApiError, doing: str) -> None:
        delay = self.options.api_backoff.delay(attempt, self.rand)
        self.emit("api_retry", task, reason=f"{doing}: {err}", delay=delay)
        await asyncio.sleep(delay)

    async def retry_pause(self, task: PlannedTask, attempt: int, failure: TaskFailure) -> None:
        delay = self.options.retry_backoff.delay(attempt, self.rand)
        self.save(task, failure=failure.detail)
        self.emit("task_retry", task, reason=failure.message, delay=delay, attempt=attempt + 1)
        await asyncio.sleep(delay)

    # -- following --------------------------------------------------------------------------

    async def wait_end(self, task: PlannedTask, wss: str | None, *, fresh: bool) -> TaskOutputs:
        """Follow the remote task until it is done (or its timeout passes)."""
        record = self._store.get(task.id)
        assert record is not None and record.remote_id is not None
        remote_id = record.remote_id
        if task.id not in self._started:  # picked up from an earlier run: its age counts
            age = time.time() - record.submitted_at if record.submitted_at else 0.0
            self._started[task.id] = time.monotonic() - max(0.0, age)
        started = self._started[task.id]
        deadline = None if task.timeout is None else started + task.timeout
        polls, tried_ws = (0, False) if fresh else (-1, False)
        while True:
            outputs = None
            if wss and self.options.websocket and not tried_ws:
                tried_ws = True
                outputs = await self._watch(task, remote_id, wss, deadline)
            elif polls >= 0:
                interval = self.options.poll.interval(polls, self.rand, expected=self._expected())
                polls += 1
                left = _remaining(deadline)
                await asyncio.sleep(interval if left is None else min(interval, left))
            else:
                polls = 0  # re-attaching: ask at once
            if outputs is None:
                if deadline is not None and time.monotonic() >= deadline:
                    await self._timed_out(task, remote_id)
                outputs = await self._outputs(task, remote_id)
            if outputs.done:
                self._durations.append(time.monotonic() - started)
                return outputs
            self._set_remote_state(task, record, outputs)
            if outputs.net_wss_url and not tried_ws:
                wss = outputs.net_wss_url

    async def _watch(
        self, task: PlannedTask, remote_id: str, wss: str, deadline: float | None
    ) -> TaskOutputs | None:
        """Follow the WebSocket until it ends (None: confirm with ``outputs``). Every
        ``ws_check`` seconds one ``outputs`` call makes sure a silent socket cannot hide the
        end of the task; its answer is returned when the task is done."""
        socket = asyncio.create_task(
            follow(
                wss,
                session=self._session,
                timeout=_remaining(deadline),
                on_event=functools.partial(self._progress, task),
            )
        )
        try:
            while True:
                left = _remaining(deadline)
                check = self.options.ws_check if left is None else min(self.options.ws_check, left)
                ended, _ = await asyncio.wait({socket}, timeout=check)
                if ended or (deadline is not None and time.monotonic() >= deadline):
                    return None
                outputs = await self._outputs(task, remote_id)
                if outputs.done:
                    return outputs
        finally:
            socket.cancel()
            await asyncio.gather(socket, return_exceptions=True)

    def _set_remote_state(self, task: PlannedTask, record: TaskRecord, out: TaskOutputs) -> None:
        status = "queued" if out.state == "QUEUED" else "running"
        if record.status != status:
            self.save(task, status=status)

    def _expected(self) -> float | None:
        return statistics.median(self._durations) if self._durations else None

    def _progress(self, task: PlannedTask, event: ProgressEvent) -> None:
        if event.kind == "progress" and event.max:
            fraction = min(1.0, (event.value or 0) / event.max)
            self._journal.progress[task.id] = round(fraction, 3)
            self.emit("task_progress", task, node=event.node, value=event.value, max=event.max)
        elif event.kind in ("executing", "cached", "start") and event.node is not None:
            self.emit("task_node", task, node=event.node, kind=event.kind)

    async def _outputs(self, task: PlannedTask, remote_id: str) -> TaskOutputs:
        errors = 0
        while True:
            try:
                return await self.call(self.client.outputs, remote_id)
            except TaskNotFoundError as err:
                message = f"the server no longer knows task {remote_id}; submitting again"
                raise Lost(message) from err
            except ApiError as err:
                if err.retryable and errors < self.options.api_retries:
                    await self._api_pause(task, errors, err, "checking the task")
                    errors += 1
                    continue
                raise api_failure(err, f"checking task {remote_id} failed") from err

    async def _timed_out(self, task: PlannedTask, remote_id: str) -> None:
        await self._cancel_quietly(remote_id)
        raise TaskFailure(
            {
                "kind": "timeout",
                "message": f"no result within the step's timeout of "
                f"{task.timeout:g} s; remote task {remote_id} cancelled",
            },
            retry=True,
        )

    async def _cancel_quietly(self, remote_id: str) -> str | None:
        try:
            await asyncio.wait_for(self.call(self.client.cancel, remote_id), 15.0)
        except (ApiError, asyncio.TimeoutError) as err:
            return str(err) or "no answer"
        return None

    async def recover(self, task: PlannedTask) -> tuple[TaskOutputs | None, bool]:
        """A task that succeeded remotely in an earlier run: its outputs with fresh links, or
        else the links recorded then (second item True); (None, False) when still running."""
        record = self._store.get(task.id)
        assert record is not None
        if record.remote_id:
            try:
                outputs = await self._outputs(task, record.remote_id)
                return (outputs, False) if outputs.done else (None, False)
            except (Lost, TaskFailure):
                pass
        if record.outputs and all(o.url for o in record.outputs):
            first = record.outputs[0].index
            recorded = tuple(
                Output(
                    o.url or "",
                    o.file_type or "",
                    o.node_id,
                    record.cost_time if o.index == first else None,
                    record.coins if o.index == first else None,
                    None,
                )
                for o in record.outputs
            )
            return TaskOutputs("SUCCESS", recorded), True
        raise Lost("the outputs of the earlier run can no longer be fetched; running it again")

    # -- endings ----------------------------------------------------------------------------

    def record_failure(
        self, task: PlannedTask, failure: TaskFailure, *, status: str | None = None
    ) -> None:
        record = self._store.get(task.id)
        if record is None:
            record = TaskRecord(task.id, task.step, "pending", params=dict(task.params))
            self._store.save(record)
        if status is None:
            status = "downloading" if failure.kind == "download" else "failed"
        self.save(task, status=status, failure=failure.detail, finished_at=time.time())

    async def abandon(self, task: PlannedTask, reason: str) -> None:
        """The run stops while this task is in flight: cancel it remotely, or leave it running
        for the next run with --detach."""
        record = self._store.get(task.id)
        if (
            record is None
            or not record.remote_id
            or record.status not in ("submitted", "queued", "running")
        ):
            return
        if reason == "interrupted" and self.options.detach:
            self.note(task, f"left running remotely (--detach) as task {record.remote_id}")
            return
        problem = await self._cancel_quietly(record.remote_id)
        message = f"{reason}; remote task {record.remote_id} cancelled"
        if problem:
            message = f"{reason}; cancelling remote task {record.remote_id} failed: {problem}"
        self.save(
            task,
            status="cancelled",
            finished_at=time.time(),
            failure={
                "kind": "interrupted" if reason == "interrupted" else "cancelled",
                "message": message,
            },
        )


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())

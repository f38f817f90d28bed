"""One task's dealings with RunningHub, for the executor: submit, follow, download, cancel.

Everything here runs on the executor's event loop; blocking client calls go to its thread pool.
Each step records into the state store as soon as it knows something: the remote taskId right
after create answers, the output links as soon as the task succeeds, each file once it is in
place. A task's failure is a ``TaskFailure`` carrying a structured reason.
"""

from __future__ import annotations

import asyncio
import functools
import json
import statistics
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from rhflow.client import Output, TaskCreated, TaskOutputs
from rhflow.errors import ApiError, PlanError, RhflowError, TaskNotFoundError
from rhflow.follow import ProgressEvent, follow
from rhflow.journal import Journal
from rhflow.model import PlannedTask
from rhflow.progress import Reporter
from rhflow.scheduling import Backoff, PollPolicy
from rhflow.store import Store, TaskRecord
from rhflow.transfers import (
    LazyUploads,
    UploadCache,
    UpstreamView,
    check_file,
    place,
    safe_destination,
)

T = TypeVar("T")
STAGING = ".rhflow/partial"
DEFAULT_POLL = PollPolicy()
RETRY_BACKOFF = Backoff(base=2.0, cap=60.0)  # a FAILED task, before it is submitted again
BUSY_BACKOFF = Backoff(base=2.0, factor=1.5, cap=30.0)  # 421/415/814, unless a slot frees first
API_BACKOFF = Backoff(base=0.5, cap=20.0)  # network faults, 5xx, 1011...


@dataclass(frozen=True, slots=True)
class ExecuteOptions:
    """How a run behaves; the defaults suit the real platform."""

    concurrency: int = 4
    force: bool = False
    fail_fast: bool = False
    detach: bool = False
    websocket: bool = True
    poll: PollPolicy = DEFAULT_POLL
    retry_backoff: Backoff = RETRY_BACKOFF
    busy_backoff: Backoff = BUSY_BACKOFF
    api_backoff: Backoff = API_BACKOFF
    api_retries: int = 6
    download_retries: int = 5
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.threads is None:
            object.__setattr__(self, "threads", min(32, self.concurrency + 2))


class TaskFailure(Exception):
    """Why a task stopped: ``detail`` is ``{"kind", "message", ...}`` as the manifest shows it."""

    def __init__(self, detail: Mapping[str, Any], *, retry: bool, fatal: bool = False) -> None:
        self.detail = dict(detail)
        self.retry = retry
        self.fatal = fatal
        super().__init__(self.detail["message"])

    @property
    def message(self) -> str:
        return str(self.detail["message"])

    @property
    def kind(self) -> str:
        return str(self.detail["kind"])


class Lost(Exception):
    """The remote task is gone (unknown to the server): submit the task again."""


def failure_of(outputs: TaskOutputs) -> dict[str, Any]:
    """The structured failure of a FAILED task."""
    reason = outputs.failed_reason
    if reason is None:
        return {"kind": "failed", "message": f"the task failed ({outputs.message or 'no reason'})"}
    return {
        "kind": "failed",
        "message": str(reason),
        "code": None,
        "node_id": reason.node_id,
        "node_name": reason.node_name,
        "exception_type": reason.exception_type,
    }


def api_failure(err: ApiError, doing: str) -> TaskFailure:
    detail = {"kind": "api_error", "message": f"{doing}: {err}", "code": err.code}
    return TaskFailure(detail, retry=False, fatal=err.fatal)


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
        output_dir: Path,
    ) -> None:
        self._client = client
        self._store = store
        self._journal = journal
        self._reporter = reporter
        self._options = options
        self._rand = rand
        self._output_dir = output_dir
        self._server = server
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._durations: deque[float] = deque(maxlen=20)
        self._claimed: dict[Path, str] = {}
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

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self._loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def _emit(self, event: str, task: PlannedTask, **fields: Any) -> None:
        self._reporter.emit(event, task=task.id, step=task.step, **fields)

    def _save(self, task: PlannedTask, **changes: Any) -> TaskRecord:
        self.dirty = True
        return self._store.update(task.id, **changes)

    def note(self, task: PlannedTask, message: str) -> None:
        record = self._store.get(task.id)
        notes = record.notes if record else ()
        self._save(task, notes=(*notes, message))
        self._emit("note", task, message=message)

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

                entries = await self._call(resolve, task, needs)
            else:
                entries = [dict(e) for e in task.node_info_list]
            for file_input in task.files:
                name = await self._call(self._uploads.name_for, file_input.path, file_input.sha256)
                entries[file_input.index] = {**entries[file_input.index], "fieldValue": name}
        except ApiError as err:
            raise api_failure(err, "uploading an input failed") from err
        except (RhflowError, OSError) as err:
            raise TaskFailure(
                {"kind": "api_error", "message": f"preparing inputs: {err}"}, retry=False
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
                    delay = self._options.busy_backoff.delay(busy, self._rand)
                    busy += 1
                    self._emit("task_busy", task, reason=str(err), delay=delay)
                    await self._wait_for_slot(delay)
                    continue
                if err.retryable and errors < self._options.api_retries:
                    await self._api_pause(task, errors, err, "submitting")
                    errors += 1
                    continue
                raise api_failure(err, "submitting the task failed") from err

    async def _create_recorded(self, task: PlannedTask, entries: list[dict[str, Any]]) -> Any:
        future = self._loop.run_in_executor(
            self._pool, functools.partial(self._create, task, entries)
        )
        try:
            created = await asyncio.shield(future)
        except asyncio.CancelledError:
            # The request is in the air: wait for its answer so the remote id is never lost.
            try:
                created = await future
            except ApiError:
                raise asyncio.CancelledError() from None
            self._record_created(task, created, entries)
            raise
        self._record_created(task, created, entries)
        return created

    def _create(self, task: PlannedTask, entries: list[dict[str, Any]]) -> TaskCreated:
        target = task.target
        if target.kind == "app":
            return self._client.run_ai_app(
                target.id, entries, webhook_url=task.webhook_url, instance_type=task.instance_type
            )
        if target.kind == "quick_app":
            return self._client.run_quick_ai_app(target.id, target.quick_create_code or "", entries)
        workflow = json.dumps(target.workflow_json) if target.workflow_json else None
        return self._client.create_task(
            target.id,
            entries,
            workflow=workflow,
            add_metadata=task.add_metadata,
            webhook_url=task.webhook_url,
            instance_type=task.instance_type,
            use_personal_queue=task.use_personal_queue,
        )

    def _record_created(
        self, task: PlannedTask, created: TaskCreated, entries: list[dict[str, Any]]
    ) -> None:
        record = self._store.get(task.id)
        attempts = (record.attempts if record else 0) + 1
        status = "queued" if created.status.upper() == "QUEUED" else "running"
        self._save(
            task,
            remote_id=created.task_id,
            server=self._server,
            status=status,
            attempts=attempts,
            node_info_list=tuple(entries),
            submitted_at=time.time(),
            finished_at=None,
            failure=None,
            outputs=(),
        )
        self._started[task.id] = time.monotonic()
        self._emit("task_submitted", task, task_id=created.task_id, attempt=attempts, status=status)

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
        delay = self._options.api_backoff.delay(attempt, self._rand)
        self._emit("api_retry", task, reason=f"{doing}: {err}", delay=delay)
        await asyncio.sleep(delay)

    async def retry_pause(self, task: PlannedTask, attempt: int, failure: TaskFailure) -> None:
        delay = self._options.retry_backoff.delay(attempt, self._rand)
        self._save(task, failure=failure.detail)
        self._emit("task_retry", task, reason=failure.message, delay=delay, attempt=attempt + 1)
        await asyncio.sleep(delay)

    # -- following --------------------------------------------------------------------------

    async def wait_end(self, task: PlannedTask, wss: str | None, *, fresh: bool) -> TaskOutputs:
        """Follow the remote task until it is done (or its timeout passes)."""
        record = self._store.get(task.id)
        assert record is not None and record.remote_id is not None
        remote_id = record.remote_id
        started = self._started.setdefault(task.id, time.monotonic())
        deadline = None if task.timeout is None else started + task.timeout
        polls, tried_ws = (0, False) if fresh else (-1, False)
        while True:
            if wss and self._options.websocket and not tried_ws:
                tried_ws = True
                await follow(
                    wss,
                    session=self._session,
                    timeout=_remaining(deadline),
                    on_event=functools.partial(self._progress, task),
                )
            elif polls >= 0:
                interval = self._options.poll.interval(polls, self._rand, expected=self._expected())
                polls += 1
                left = _remaining(deadline)
                await asyncio.sleep(interval if left is None else min(interval, left))
            else:
                polls = 0  # re-attaching: ask at once
            if deadline is not None and time.monotonic() >= deadline:
                await self._timed_out(task, remote_id)
            outputs = await self._outputs(task, remote_id)
            if outputs.done:
                self._durations.append(time.monotonic() - started)
                return outputs
            self._set_remote_state(task, record, outputs)
            if outputs.net_wss_url and not tried_ws:
                wss = outputs.net_wss_url

    def _set_remote_state(self, task: PlannedTask, record: TaskRecord, out: TaskOutputs) -> None:
        status = "queued" if out.state == "QUEUED" else "running"
        if record.status != status:
            self._save(task, status=status)

    def _expected(self) -> float | None:
        return statistics.median(self._durations) if self._durations else None

    def _progress(self, task: PlannedTask, event: ProgressEvent) -> None:
        if event.kind == "progress" and event.max:
            fraction = min(1.0, (event.value or 0) / event.max)
            self._journal.progress[task.id] = round(fraction, 3)
            self._emit("task_progress", task, node=event.node, value=event.value, max=event.max)
        elif event.kind in ("executing", "cached", "start") and event.node is not None:
            self._emit("task_node", task, node=event.node, kind=event.kind)

    async def _outputs(self, task: PlannedTask, remote_id: str) -> TaskOutputs:
        errors = 0
        while True:
            try:
                return await self._call(self._client.outputs, remote_id)
            except TaskNotFoundError as err:
                message = f"the server no longer knows task {remote_id}; submitting again"
                raise Lost(message) from err
            except ApiError as err:
                if err.retryable and errors < self._options.api_retries:
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
            await asyncio.wait_for(self._call(self._client.cancel, remote_id), 15.0)
        except (ApiError, asyncio.TimeoutError) as err:
            return str(err) or "no answer"
        return None

    async def recover(self, task: PlannedTask) -> TaskOutputs | None:
        """A task that succeeded remotely before: its outputs (fresh links), or None to follow."""
        record = self._store.get(task.id)
        assert record is not None
        if record.remote_id:
            try:
                outputs = await self._outputs(task, record.remote_id)
                if outputs.done:
                    return outputs
                return None
            except (Lost, TaskFailure):
                pass
        if record.outputs and all(o.url for o in record.outputs):
            return TaskOutputs(
                "SUCCESS",
                tuple(
                    Output(o.url or "", o.file_type or "", o.node_id, None, None, None)
                    for o in record.outputs
                ),
            )
        raise Lost("the outputs of the earlier run can no longer be fetched; running it again")

    # -- outputs ----------------------------------------------------------------------------

    async def collect(self, task: PlannedTask, outputs: Sequence[Output]) -> None:
        """Record the output links, then download each file into place."""
        from rhflow.store import OutputRecord

        cost = next((o.task_cost_time for o in outputs if o.task_cost_time is not None), None)
        coins = sum(o.consume_coins or 0.0 for o in outputs) if outputs else None
        records = [
            OutputRecord(i, o.node_id, o.file_url or None, o.file_type)
            for i, o in enumerate(outputs)
        ]
        self._save(
            task,
            status="downloading",
            outputs=tuple(records),
            cost_time=cost,
            coins=coins,
            failure=None,
        )
        done = []
        for index, output in enumerate(outputs):
            done.append(await self._download(task, index, output))
            self._save(task, outputs=(*done, *records[len(done) :]))
        self._save(task, status="succeeded", finished_at=time.time(), failure=None)
        self._emit("task_succeeded", task, task_id=self._task_remote(task), outputs=len(done))

    def _task_remote(self, task: PlannedTask) -> str | None:
        record = self._store.get(task.id)
        return record.remote_id if record else None

    async def _download(self, task: PlannedTask, index: int, output: Output) -> Any:
        from rhflow.store import OutputRecord

        ext = (output.file_type or "bin").lower()
        dest = self._destination(task, index, ext, output.node_id)
        staged = self._output_dir / STAGING / f"{task.id}-{index}.{ext}"
        for attempt in range(self._options.download_retries + 1):
            try:
                sha, size = await self._call(self._fetch, output, staged, ext)
                place(staged, dest)
                break
            except ApiError as err:
                if attempt == self._options.download_retries:
                    raise TaskFailure(
                        {
                            "kind": "download",
                            "message": f"downloading output "
                            f"{index} failed: {err}; run again to retry the "
                            "download (the task is not run again)",
                        },
                        retry=False,
                    ) from err
                delay = self._options.api_backoff.delay(attempt, self._rand)
                self._emit("download_retry", task, reason=str(err), delay=delay)
                await asyncio.sleep(delay)
        self._emit("download", task, path=str(dest), bytes=size, sha256=sha, index=index)
        return OutputRecord(
            index, output.node_id, output.file_url or None, output.file_type, str(dest), sha, size
        )

    def _fetch(self, output: Output, staged: Path, ext: str) -> tuple[str, int]:
        if not output.file_url:
            from rhflow.manifest import write_atomic
            from rhflow.transfers import file_sha256

            write_atomic(staged, (output.text or "").encode("utf-8"))
            return file_sha256(staged), staged.stat().st_size
        result = self._client.download(output.file_url, staged)
        try:
            check_file(staged, ext, result.bytes)
        except ApiError:
            staged.unlink(missing_ok=True)
            raise
        return str(result.sha256), int(result.bytes)

    def _destination(self, task: PlannedTask, index: int, ext: str, node_id: str | None) -> Path:
        from rhflow.planner import output_name

        try:
            name = output_name(
                task, index=index, ext=ext, node_id=node_id or "", task_short=task.id[:8]
            )
            dest = safe_destination(self._output_dir, name)
        except PlanError as err:
            raise TaskFailure({"kind": "download", "message": str(err)}, retry=False) from err
        owner = self._claimed.setdefault(dest, task.id)
        if owner != task.id:
            dest = dest.with_name(f"{dest.stem}-{task.id[:8]}{dest.suffix}")
            self._claimed[dest] = task.id
            self.note(
                task,
                f"output name {name!r} is used by task {owner[:10]} too; "
                f"writing {dest.name} instead (make the outputs template unique)",
            )
        return dest

    def claim_outputs(self, record: TaskRecord) -> None:
        for output in record.outputs:
            if output.path:
                self._claimed.setdefault(Path(output.path), record.id)

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
        self._save(task, status=status, failure=failure.detail, finished_at=time.time())

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
        if reason == "interrupted" and self._options.detach:
            self.note(task, f"left running remotely (--detach) as task {record.remote_id}")
            return
        problem = await self._cancel_quietly(record.remote_id)
        message = f"{reason}; remote task {record.remote_id} cancelled"
        if problem:
            message = f"{reason}; cancelling remote task {record.remote_id} failed: {problem}"
        self._save(
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


def _replace_record(record: TaskRecord, **changes: Any) -> TaskRecord:
    return replace(record, **changes)

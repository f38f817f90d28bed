"""Watching a remote task until it ends, for the executor.

The task's WebSocket is followed when one is offered (live node progress, and the end of the
task at once), confirmed by one ``outputs`` call, with one more ``outputs`` call every
``ws_check`` seconds in case the socket goes silent. Without a socket, or once it is lost,
``outputs`` is polled at the intervals ``PollPolicy`` gives, informed by how long this run's
tasks took so far. A task's ``timeout`` cancels it remotely.
"""

from __future__ import annotations

import asyncio
import functools
import time

from rhflow.api.client import Output, TaskOutputs
from rhflow.api.follow import ProgressEvent, follow
from rhflow.errors import ApiError, TaskNotFoundError
from rhflow.execute.failures import Lost, TaskFailure, api_failure
from rhflow.execute.remote import Remote, active_status
from rhflow.execute.scheduling import RunTimes
from rhflow.model import PlannedTask
from rhflow.record.journal import Journal
from rhflow.record.store import Store

#: seconds between two progress events of one task (a node's last step is always shown)
PROGRESS_EVERY = 0.25
#: A loop whose sleeps wake this share of the shortest run time late is saturated: a socket
#: found early is noticed no sooner than a poll at the end, and costs CPU (its connection,
#: its frames, an extra request), so a queued task is then polled for its end instead.
BUSY = 0.02


class Watcher:
    """Follows the remote tasks of one run through ``remote``'s client, pool and store."""

    def __init__(self, remote: Remote, store: Store, journal: Journal) -> None:
        self._remote = remote
        self._store = store
        self._journal = journal
        self._run_times: dict[str, RunTimes] = {}  # step -> the run times of its tasks
        #: step -> a future resolved when its first run time is known: tasks polled with
        #: nothing known wake to plan their next poll by it
        self._first_news: dict[str, asyncio.Future[None]] = {}
        self._shown: dict[str, float] = {}  # task id -> when its last progress event went out
        self._late = 0.0  # how late a sleep of this loop wakes, averaged (seconds)

    async def wait_end(self, task: PlannedTask, wss: str | None, *, fresh: bool) -> TaskOutputs:
        """Follow the remote task until it is done (or its timeout passes)."""
        record = self._store.get(task.id)
        assert record is not None and record.remote_id is not None
        remote_id = record.remote_id
        if task.id not in self._remote.started:  # picked up from an earlier run: its age counts
            age = time.time() - record.submitted_at if record.submitted_at else 0.0
            self._remote.started[task.id] = time.monotonic() - max(0.0, age)
        started = self._remote.started[task.id]
        deadline = None if task.timeout is None else started + task.timeout
        polls, tried_ws = (0, False) if fresh else (-1, False)
        pending: float | None = None  # when the task was last known not to be done
        while True:
            outputs = None
            if wss and self._remote.options.websocket and not tried_ws:
                tried_ws = True
                outputs = await self._watch(task, remote_id, wss, deadline)
                pending = time.monotonic()  # the socket saw the end as it came
            elif polls >= 0:
                times = self._times(task.step)
                age = time.monotonic() - started
                interval, for_end = self._interval(times, polls, age, searching=not tried_ws)
                left = _remaining(deadline)
                wait = interval if left is None else min(interval, left)
                slept = time.monotonic()
                if not for_end or times.seen() is not None:
                    await asyncio.sleep(wait)
                elif await self._news(task.step, wait):  # waits ``wait`` at most
                    continue  # the step's first run time came: plan the poll by it
                polls += 1
                late = time.monotonic() - slept - wait  # the loop's own delay: how busy it is
                self._late += (late - self._late) * 0.1
            else:
                polls = 0  # re-attaching: ask at once
            if outputs is None:
                if deadline is not None and time.monotonic() >= deadline:
                    await self._timed_out(task, remote_id)
                outputs = await self.outputs(task, remote_id)
            if outputs.done:
                self._learn(task.step, started, pending)
                self._shown.pop(task.id, None)
                return outputs
            pending = time.monotonic()
            state = active_status(outputs.state)
            if state != record.status:
                record = self._remote.save(task, status=state)
            if outputs.net_wss_url and not tried_ws:
                wss = outputs.net_wss_url

    def _times(self, step: str) -> RunTimes:
        found = self._run_times.get(step)
        if found is None:
            found = self._run_times[step] = RunTimes()
        return found

    def _learn(self, step: str, started: float, pending: float | None) -> None:
        """A task of ``step`` created at ``started``, last known not done at ``pending``
        (None: done at its first look), is seen done now: its run time counts for the polls
        of the step's other tasks."""
        policy = self._remote.options.poll
        self._times(step).add(started, pending, time.monotonic(), policy=policy)
        news = self._first_news.pop(step, None)
        if news is not None and not news.done():
            news.set_result(None)

    async def _news(self, step: str, wait: float) -> bool:
        """Sleep ``wait`` seconds, or less if the step's first run time comes first (True)."""
        news = self._first_news.get(step)
        if news is None:
            news = self._first_news[step] = asyncio.get_running_loop().create_future()
        done, _ = await asyncio.wait({news}, timeout=wait)
        return bool(done)

    def _interval(
        self, times: RunTimes, polls: int, age: float, *, searching: bool
    ) -> tuple[float, bool]:
        """Seconds to the next ``outputs`` call of a task ``age`` seconds old, by the run
        times of its step, and whether the call looks for the task's end (``searching``:
        the socket is still wanted; it is looked for unless the loop is saturated)."""
        options = self._remote.options
        earliest = times.earliest()
        if searching and options.websocket and not saturated(self._late, earliest):
            return options.poll.until_socket(polls, self._remote.rand, earliest=earliest), False
        return options.poll.interval(polls, self._remote.rand, age=age, seen=times.seen()), True

    async def _watch(
        self, task: PlannedTask, remote_id: str, wss: str, deadline: float | None
    ) -> TaskOutputs | None:
        """Follow the WebSocket until it ends (None: confirm with ``outputs``). Every
        ``ws_check`` seconds one ``outputs`` call makes sure a silent socket cannot hide the
        end of the task; its answer is returned when the task is done."""
        socket = asyncio.create_task(
            follow(
                wss,
                session=await self._remote.session(),
                timeout=_remaining(deadline),
                on_event=functools.partial(self._progress, task),
                mask=getattr(self._remote.client, "mask", None),
            )
        )
        try:
            while True:
                left = _remaining(deadline)
                check = (
                    self._remote.options.ws_check
                    if left is None
                    else min(self._remote.options.ws_check, left)
                )
                ended, _ = await asyncio.wait({socket}, timeout=check)
                if ended or (deadline is not None and time.monotonic() >= deadline):
                    return None
                outputs = await self.outputs(task, remote_id)
                if outputs.done:
                    return outputs
        finally:
            socket.cancel()
            await asyncio.gather(socket, return_exceptions=True)

    def _progress(self, task: PlannedTask, event: ProgressEvent) -> None:
        """A frame of the task's WebSocket: its progress for the manifest, and an event for
        whoever shows them, at most one per ``PROGRESS_EVERY`` seconds and task (the last
        step of a node always), so that their number does not grow with the frames sent."""
        steps = event.kind == "progress" and bool(event.max)
        if steps:
            fraction = min(1.0, (event.value or 0) / (event.max or 1))
            self._journal.set_progress(task.id, round(fraction, 3))
        node = event.kind in ("executing", "cached", "start") and event.node is not None
        if not self._remote.shows_progress or not (steps or node):
            return
        now = time.monotonic()
        last = self._shown.get(task.id)
        node_done = steps and (event.value or 0) >= (event.max or 0)
        if last is not None and now - last < PROGRESS_EVERY and not node_done:
            return
        self._shown[task.id] = now
        if steps:
            self._remote.emit(
                "task_progress", task, node=event.node, value=event.value, max=event.max
            )
        else:
            self._remote.emit("task_node", task, node=event.node, kind=event.kind)

    async def outputs(self, task: PlannedTask, remote_id: str) -> TaskOutputs:
        errors = 0
        while True:
            try:
                calls = await self._remote.calls(self._remote.client_for(task))
                return await self._remote.ask(calls.outputs, remote_id)
            except TaskNotFoundError as err:
                message = f"the server no longer knows task {remote_id}"
                raise Lost(message) from err
            except ApiError as err:
                if self._remote.retrying(err, errors):
                    await self._remote.api_pause(task, errors, err, "checking the task")
                    errors += 1
                    continue
                # Only the check failed: the task may still run, so the next run re-attaches.
                doing = f"checking task {remote_id} failed (run again to pick it up)"
                raise api_failure(err, doing, keep="running") from err

    async def _timed_out(self, task: PlannedTask, remote_id: str) -> None:
        record = self._store.get(task.id)  # cancelled with the key that created it
        problem = await self._remote.cancel_quietly(remote_id, record.key if record else None)
        cancelled = f"remote task {remote_id} cancelled"
        if problem is not None:  # it may still run (and cost): say so
            cancelled = f"cancelling remote task {remote_id} failed: {problem}"
        raise TaskFailure(
            {
                "kind": "timeout",
                "message": f"no result within the step's timeout of {task.timeout:g} s; "
                + cancelled,
            },
            retry=True,
        )

    async def recover(self, task: PlannedTask) -> tuple[TaskOutputs | None, bool]:
        """A task that succeeded remotely in an earlier run: its outputs with fresh links, or
        else the links recorded then (second item True); (None, False) when still running."""
        record = self._store.get(task.id)
        assert record is not None
        if record.remote_id:
            try:
                outputs = await self.outputs(task, record.remote_id)
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
                    record.money if o.index == first else None,
                )
                for o in record.outputs
            )
            return TaskOutputs("SUCCESS", recorded), True
        raise Lost("the outputs of the earlier run can no longer be fetched")


def saturated(late: float, earliest: float | None) -> bool:
    """Whether a loop whose sleeps wake ``late`` seconds late (on average) is too busy for an
    early socket to help tasks of at least ``earliest`` seconds (see ``BUSY``)."""
    return earliest is not None and late > BUSY * earliest


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())

"""The line of tasks waiting to start, for the executor's workers.

A task enters the line when every upstream task it needs has succeeded. Tasks picked up from
an earlier run, and tasks whose upstream just finished, go to the front, so chains finish
before the next root task starts. When a task fails, everything downstream of it leaves the
line for good (``drop_downstream``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from rhflow.model import PlannedTask
from rhflow.record.store import TaskRecord


@dataclass(slots=True)
class Live:
    """A task of this run: its plan, its latest record, and how to start it."""

    task: PlannedTask
    record: TaskRecord
    mode: str = "fresh"  # fresh | follow | collect | done
    waiting: set[str] = field(default_factory=set)
    run_attempts: int = 0
    stale: bool = False  # downloading from links recorded by an earlier run


class Lineup:
    """Every task of the run by id, who needs whom, and the line of tasks ready to start."""

    def __init__(self) -> None:
        self.tasks: dict[str, Live] = {}
        self._children: dict[str, list[str]] = {}
        self._ready: deque[Live] = deque()
        self.remaining = 0  # tasks of this run that have not ended yet
        self._wake = asyncio.Event()

    def add(self, live: Live, satisfied: Callable[[str], bool]) -> None:
        """Add a task (upstream tasks first); ``satisfied(id)`` says an upstream is done."""
        self.tasks[live.task.id] = live
        for upstream in live.task.upstream_ids:
            self._children.setdefault(upstream, []).append(live.task.id)
        if live.mode != "done":
            self.remaining += 1
            live.waiting = {u for u in live.task.upstream_ids if not satisfied(u)}

    def done(self, task_id: str) -> bool:
        live = self.tasks.get(task_id)
        return live is not None and live.mode == "done" and live.record.status == "succeeded"

    def start(self) -> None:
        """Put every task that can start in line, in plan order."""
        for live in self.tasks.values():
            self._queue_if_ready(live, at_start=True)

    def stuck(self) -> list[tuple[Live, str]]:
        """Tasks needing an upstream task that is not part of this run (and not done)."""
        found = []
        for live in self.tasks.values():
            missing = sorted(u for u in live.waiting if u not in self.tasks)
            if missing and live.mode != "done":
                found.append((live, missing[0]))
        return found

    def _queue_if_ready(self, live: Live, *, at_start: bool = False) -> None:
        if live.mode == "done" or live.waiting:
            return
        if live.mode in ("follow", "collect") or not at_start:
            self._ready.appendleft(live)  # in flight already, or a chain to finish first
        else:
            self._ready.append(live)
        self._wake.set()

    async def next(self, stopped: Callable[[], bool]) -> Live | None:
        """The next task to run, or None when all have ended or the run stops."""
        while True:
            if stopped():
                return None
            if self._ready:
                return self._ready.popleft()
            if self.remaining <= 0:
                return None
            self._wake.clear()
            await self._wake.wait()

    def wake(self) -> None:
        self._wake.set()

    def ended(self, task_id: str, *, succeeded: bool) -> list[Live]:
        """A task of this run ended: its children move on; after a failure, the tasks
        downstream of it are dropped and returned."""
        self.remaining -= 1
        dropped: list[Live] = []
        if succeeded:
            for child_id in self._children.get(task_id, ()):
                child = self.tasks.get(child_id)
                if child is not None and child.mode != "done":
                    child.waiting.discard(task_id)
                    self._queue_if_ready(child)
        else:
            dropped = self.drop_downstream(task_id)
        self._wake.set()
        return dropped

    def drop_downstream(self, upstream: str) -> list[Live]:
        """Take every task still waiting on ``upstream`` (and theirs) out of the run."""
        dropped: list[Live] = []
        for child_id in self._children.get(upstream, ()):
            child = self.tasks.get(child_id)
            if child is None or child.mode == "done" or not child.waiting:
                continue
            child.waiting.clear()
            child.mode = "done"
            self.remaining -= 1
            dropped.append(child)
            dropped += self.drop_downstream(child_id)
        self._wake.set()
        return dropped

"""Tasks and their clock: QUEUED -> RUNNING -> SUCCESS / FAILED, driven by loop.call_later."""

from __future__ import annotations

import asyncio
import math
import random
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rhflow.emulator import events, outputs
from rhflow.emulator.config import EmulatorConfig
from rhflow.emulator.failures import cancelled_reason, out_of_memory
from rhflow.emulator.faults import Faults
from rhflow.emulator.prompt import Rejection
from rhflow.emulator.records import Task, TaskSpec, new_id
from rhflow.emulator.renders import Renders
from rhflow.emulator.workflows import topological_order

#: What an enterprise key pays per second of running time (section 1.3: billed by run time).
MONEY_PER_SECOND = 0.002


@dataclass(slots=True)
class Account:
    """One key's balance, the slots its tasks hold (queued or running) and its personal queue."""

    coins: int
    money: float
    slots: int = 0
    running: int = 0
    waiting: deque[Task] = field(default_factory=deque)


class TaskBoard:
    """All tasks of one emulator, per-key concurrency, and the clock that moves them."""

    def __init__(
        self,
        config: EmulatorConfig,
        uploads: dict[str, bytes],
        faults: Faults,
        on_end: Callable[[Task], None],
        renders: Renders,
    ) -> None:
        self.config = config
        self.renders = renders
        self.uploads = uploads
        self.faults = faults
        self.on_end = on_end
        self.tasks: dict[str, Task] = {}
        self.accounts: dict[str, Account] = {}
        self.rng = random.Random(config.seed)
        self.counts = {"created": 0, "succeeded": 0, "failed": 0, "cancelled": 0, "duplicates": 0}
        self.fingerprints: set[str] = set()
        self.running = 0
        self.active = 0
        self.peak_running = 0
        self.peak_active = 0

    def account(self, key: str) -> Account:
        return self.accounts.setdefault(key, Account(self.config.coins, self.config.money))

    def find(self, key: str, task_id: Any) -> Task | None:
        task = self.tasks.get(str(task_id).strip())
        return task if task is not None and task.spec.key == key else None

    def running_count(self, key: str) -> int:
        """RUNNING tasks of ``key`` (accountStatus' currentTaskCounts: "正在运行任务数量")."""
        return self.account(key).running

    # -- create --------------------------------------------------------------------------

    def create(self, spec: TaskSpec) -> Task | Rejection:
        account = self.account(spec.key)
        if not self.config.enterprise and account.coins <= 0:
            return Rejection(416, "TASK_CREATE_FAILED_BY_NOT_ENOUGH_WALLET")
        if self.config.enterprise and account.money <= 0:
            return Rejection(812, "CORPAPIKEY_INSUFFICIENT_FUNDS")
        full = account.slots >= self.config.slots
        # usePersonalQueue "only works for exclusive (enterprise) keys" (section 4.2).
        if full and not (spec.personal_queue and self.config.enterprise):
            return Rejection(421, "TASK_QUEUE_MAXED")
        if full and len(account.waiting) >= self.config.personal_queue_limit:
            return Rejection(814, "PERSONAL_QUEUE_COUNT_LIMIT")
        task = self._new_task(spec)
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)
        if full:
            task.waiting = True
            account.waiting.append(task)
        else:
            self._admit(task, account)
        return task

    def _new_task(self, spec: TaskSpec) -> Task:
        failure = None
        unlucky = self.rng.random() < self.config.fail_rate
        if self.faults.take("fail_tasks") or unlucky:
            failure = out_of_memory(spec.graph)
        task = Task(
            new_id(),
            secrets.token_hex(16),
            spec,
            self.rng.uniform(*self.config.queue_seconds),
            self.rng.uniform(*self.config.task_seconds),
            failure,
        )
        self.tasks[task.task_id] = task
        self.counts["created"] += 1
        if spec.fingerprint in self.fingerprints:
            self.counts["duplicates"] += 1
        self.fingerprints.add(spec.fingerprint)
        return task

    def _admit(self, task: Task, account: Account) -> None:
        account.slots += 1
        task.waiting = False
        if task.queue_seconds > 0:
            self._later(task, task.queue_seconds, self._start, task)
        else:
            self._start(task)

    # -- the clock -----------------------------------------------------------------------

    def _later(self, task: Task, delay: float, callback: Callable[..., None], *args: Any) -> None:
        task.handles.append(asyncio.get_running_loop().call_later(delay, callback, *args))

    def _start(self, task: Task) -> None:
        task.status = "RUNNING"
        task.started_at = time.monotonic()
        if task.failure is None:
            task.planned = outputs.render(task, self.uploads, self.config.seed)
            self.renders.prepare(task.planned)
        fail_node = task.failure["node_id"] if task.failure else None
        schedule = events.running_schedule(
            task.spec.graph, task.task_id, task.run_seconds, fail_node
        )
        for offset, msg in schedule:
            self._later(task, offset, self.emit, task, msg)
        self._later(task, task.run_seconds, self._finish, task)
        self.running += 1
        self.account(task.spec.key).running += 1
        self.peak_running = max(self.peak_running, self.running)

    def _finish(self, task: Task) -> None:
        task.finished_at = time.monotonic()
        if task.failure is not None:
            task.status = "FAILED"
            self.counts["failed"] += 1
            final = events.failure(task.task_id, task.failure)
        else:
            if not self.faults.take("no_outputs"):
                task.files = task.planned
            for node_id, files in outputs.by_node(task.files).items():
                self.emit(task, events.executed(node_id, task.task_id, files))
            task.status = "SUCCESS"
            self.counts["succeeded"] += 1
            self._charge(task)
        self._end(task, final if task.failure else events.success(task.task_id))

    def _charge(self, task: Task) -> None:
        """Consumer keys pay RH coins, enterprise keys money by running time (section 1.3)."""
        account = self.account(task.spec.key)
        if self.config.enterprise:
            task.money = round(max(0.01, task.run_seconds * MONEY_PER_SECOND), 2)
            account.money = round(account.money - task.money, 2)
        else:
            task.coins = max(1, math.ceil(task.run_seconds / 5))
            account.coins -= task.coins

    def cancel(self, task: Task) -> bool:
        """Cancel a queued or running task; False when it had already ended."""
        if task.terminal:
            return False
        node = next(iter(topological_order(task.spec.graph)), None)
        task.cancelled = True
        task.status = "FAILED"
        task.finished_at = time.monotonic()
        task.failure = cancelled_reason(node, task.spec.graph)
        self.counts["cancelled"] += 1
        node_type = task.spec.graph[node]["class_type"] if node else None
        self._end(task, events.interrupted(task.task_id, node, node_type))
        return True

    def _end(self, task: Task, final: list[events.Message]) -> None:
        for handle in task.handles:
            handle.cancel()
        task.handles.clear()
        self.active -= 1
        if task.started_at is not None:
            self.running -= 1
            self.account(task.spec.key).running -= 1
        account = self.account(task.spec.key)
        if task.waiting:
            account.waiting.remove(task)
            task.waiting = False
        else:
            account.slots -= 1
        task.final = final
        for msg in final:
            self.emit(task, msg)
        for queue in task.subscribers:
            queue.put_nowait(None)
        task.subscribers.clear()
        while account.waiting and account.slots < self.config.slots:
            self._admit(account.waiting.popleft(), account)
        self.on_end(task)

    def emit(self, task: Task, msg: events.Message) -> None:
        task.history.append(msg)
        for queue in task.subscribers:
            queue.put_nowait(msg)

    def shutdown(self) -> None:
        for task in self.tasks.values():
            for handle in task.handles:
                handle.cancel()
            for queue in task.subscribers:
                queue.put_nowait(None)

    def stats(self) -> dict[str, Any]:
        return {
            "tasks": dict(self.counts),
            "running": self.running,
            "queued": self.active - self.running,
            "peak_running": self.peak_running,
            "peak_active": self.peak_active,
            "task_records": [_record(t) for t in self.tasks.values()],
        }


def _record(task: Task) -> dict[str, Any]:
    return {
        "taskId": task.task_id,
        "status": task.status,
        "cancelled": task.cancelled,
        "workflowId": task.spec.workflow_id,
        "webappId": task.spec.webapp_id,
        "created": task.created,
        "files": [f.name for f in task.files],
    }

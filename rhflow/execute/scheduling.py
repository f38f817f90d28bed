"""Timing and selection policy for the executor, as pure functions of their inputs.

- ``Backoff``: exponential delays with jitter, for retries after transient errors and for
  resubmitting when the platform answers "busy" (421/415/814).
- ``PollPolicy``: how long to wait before the next ``outputs`` call for a task that is not
  followed over a WebSocket: short at first, growing to a cap, with jitter so that many tasks
  started together do not poll in lockstep.
- ``ExecuteOptions``: every knob of a run, with defaults that suit the real platform.
- ``parse_shard`` / ``shard_tasks``: a deterministic share of a task graph for CI matrix jobs.

Randomness comes in as a ``rand`` callable returning a float in [0, 1), so tests pass a fixed one.
"""

from __future__ import annotations

import hashlib
import re
import statistics
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from rhflow.api.client import MinRate
from rhflow.errors import UsageError
from rhflow.model import PlannedTask, TaskGraph

Rand = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Backoff:
    """``base * factor**attempt`` seconds, at most ``cap``, scaled by a jitter factor drawn from
    ``[1 - jitter, 1 + jitter)``. ``attempt`` counts from 0."""

    base: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    jitter: float = 0.5

    def delay(self, attempt: int, rand: Rand) -> float:
        raw = min(self.cap, self.base * self.factor ** max(0, attempt))
        return raw * (1.0 - self.jitter + 2.0 * self.jitter * rand())


#: Run times of this many tasks show how spread they are (fewer: a tenth of the median).
SPREAD_SHOWN = 5


@dataclass(frozen=True, slots=True)
class Seen:
    """Run times of the tasks that ended so far (seconds from create to end): the first
    quarter's end, the median and the high end (the last 5% left out)."""

    early: float
    median: float
    high: float
    count: int = 1  # how many tasks these come from


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """Intervals between ``outputs`` calls for one task, each scaled by a jitter factor in
    ``[1 - jitter, 1 + jitter)``.

    With nothing known: ``first`` seconds, growing by ``factor`` per poll up to ``cap``.

    With the run times ``seen`` of the tasks that ended so far, the task's end is looked for
    where theirs came, in steps of ``step(seen)``: short enough to notice an end soon after it
    came, long enough that the polls across the spread of run times stay few. The first poll
    comes at the end of the first quarter of the run times seen (up to half a step later),
    so that a quarter of the tasks are done at the first look and the others are looked at a
    step apart until the latest end seen; a task that runs longer than any seen is asked at
    intervals growing with how late it is (``late`` of that), up to ``cap``.

    ``until_socket`` gives the intervals while a task is polled only to learn its WebSocket
    (it was queued when created, and the socket is offered once it runs): the socket tells
    the end at once, so the poll has to come while the task runs, before its end. With
    ``earliest`` (the shortest run time seen so far) the first poll comes at ``lead`` of it,
    jittered only downwards, so that it lands before the earliest end, and a task still
    queued then is asked again every ``socket_tail`` of it (growing by ``tail_factor``), a
    step shorter than the run itself unless the queue is longer; with nothing known,
    ``socket_first`` seconds growing by ``tail_factor``, so that a short task is not missed
    while it runs.
    """

    first: float = 0.5
    factor: float = 1.35
    cap: float = 15.0
    jitter: float = 0.2
    lead: float = 0.9
    tail: float = 0.12
    spread: float = 3.5
    least: float = 0.05
    late: float = 0.25
    longest_first: float = 120.0
    floor: float = 0.1
    tail_factor: float = 1.3
    socket_first: float = 0.25
    socket_tail: float = 0.5

    def interval(
        self, poll: int, rand: Rand, *, age: float = 0.0, seen: Seen | None = None
    ) -> float:
        """Seconds to the next ``outputs`` call of a task ``age`` seconds after its create,
        polled ``poll`` times so far."""
        jitter = 1.0 - self.jitter + 2.0 * self.jitter * rand()
        if seen is None:
            return max(self.floor, min(self.cap, self.first * self.factor ** max(0, poll))) * jitter
        step = self.step(seen)
        if age < seen.early:
            return min(self.longest_first, seen.early - age + step * 0.5 * rand())
        if age < seen.high + step:
            return step * jitter
        return min(self.cap, max(step, self.late * (age - seen.high))) * jitter

    def step(self, seen: Seen) -> float:
        """The interval between polls across the run times seen: a ``spread``-th of their
        spread (once ``SPREAD_SHOWN`` tasks have shown it), at most ``tail`` of the median, at
        least ``least`` of it (and ``floor``), at most ``cap``."""
        within = self.tail * seen.median  # until a few tasks have shown the spread
        if seen.count >= SPREAD_SHOWN:
            within = min(within, (seen.high - seen.early) / self.spread)
        return min(self.cap, max(self.floor, self.least * seen.median, within))

    def until_socket(self, poll: int, rand: Rand, *, earliest: float | None = None) -> float:
        poll = max(0, poll)
        if earliest is None:
            raw = max(self.floor, min(self.cap, self.socket_first * self.tail_factor**poll))
            return raw * (1.0 - self.jitter + 2.0 * self.jitter * rand())
        if poll == 0:
            raw = max(self.floor, min(self.longest_first, earliest * self.lead))
            return raw * (1.0 - self.jitter * rand())
        start = max(self.floor, earliest * self.socket_tail)
        raw = min(self.cap, start * self.tail_factor ** (poll - 1))
        return raw * (1.0 - self.jitter + 2.0 * self.jitter * rand())

    def scaled(self, divisor: float) -> PollPolicy:
        """The same policy with every duration divided by ``divisor`` (for quick runs)."""
        return replace(
            self,
            first=self.first / divisor,
            cap=self.cap / divisor,
            longest_first=self.longest_first / divisor,
            floor=self.floor / divisor,
            socket_first=self.socket_first / divisor,
        )


class RunTimes:
    """The remote run times of the last ``keep`` tasks that ended, for ``PollPolicy``.

    A polled task ended somewhere between the last answer that said "not done" and the one
    that said "done"; the middle of that gap is counted, not the moment the end was noticed.
    Counting the latter would make each wait longer than the last: the first poll, planned by
    what was seen, lands later, notices later, and lengthens what is seen again. A task done
    at its first look gives no such gap: its end is taken as a step of the policy before it
    was noticed (``pending`` then), which keeps the first look, planned by the first quarter
    of the run times, from drifting later and later.
    """

    def __init__(self, keep: int = 40) -> None:
        self._seen: deque[float] = deque(maxlen=keep)
        self._window: Seen | None = None
        self._earliest: float | None = None

    def add(
        self, started: float, pending: float | None, noticed: float, *, policy: PollPolicy
    ) -> None:
        """A task created at ``started``, last seen running at ``pending`` (None: done at its
        first look), seen done at ``noticed`` (one clock, in seconds), polled by ``policy``."""
        if pending is None:
            seen = self._window
            pending = started if seen is None else noticed - policy.step(seen)
        self._seen.append(max(0.0, (max(started, pending) + noticed) / 2 - started))
        ordered = sorted(self._seen)
        count = len(ordered)
        high = ordered[-1 - count // 20]  # the last 5% left out
        self._window = Seen(ordered[count // 4], statistics.median(ordered), high, count)
        self._earliest = ordered[0]

    def seen(self) -> Seen | None:
        """The first quarter's end, median and high end of the run times of the tasks that
        ended (None: none yet)."""
        return self._window

    def earliest(self) -> float | None:
        return self._earliest


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
    poll: PollPolicy = PollPolicy()
    retry_backoff: Backoff = RETRY_BACKOFF
    busy_backoff: Backoff = BUSY_BACKOFF
    api_backoff: Backoff = API_BACKOFF
    api_retries: int = 6
    ws_check: float = 60.0  # while following a WebSocket, one outputs call this often
    download_retries: int = 5
    max_outputs: int = 1000  # outputs one task may report; beyond, it fails unread
    threads: int | None = None
    max_coins: float | None = None  # stop submitting once this run has spent this many coins
    max_money: float | None = None  # ... or this much money (in the key's currency)
    # the server stopped answering: this many API requests in a row got no answer, the first
    # sent this many seconds ago or more (see rhflow.execute.breaker)
    silent_requests: int = 2
    silent_seconds: float = 45.0

    def __post_init__(self) -> None:
        if self.threads is None:
            object.__setattr__(self, "threads", min(32, self.concurrency + 2))


@dataclass(frozen=True, slots=True)
class Shard:
    """Share ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _bytes(text: str | int) -> int:
    """``"500MB"``, ``"2GiB"``, ``"64k"`` or a number -> bytes (binary units); 0 when it is
    none of these."""
    if isinstance(text, int):
        return text
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*", text.upper())
    return int(float(found.group(1)) * _UNITS[found.group(2)]) if found else 0


def parse_size(text: str | int) -> int:
    """``"500MB"``, ``"2GiB"``, ``"64k"`` or a number of bytes -> bytes (units are binary:
    1 MB = 1 MiB); a UsageError that shows the expected form otherwise."""
    size = _bytes(text)
    if size < 1:
        raise UsageError(
            f"--max-output-size {text!r} is not a size: write bytes or a number with "
            "KB, MB or GB, e.g. --max-output-size 500MB"
        )
    return size


def parse_rate(text: str) -> MinRate | None:
    """``"1KB/15s"`` (at least 1 KiB in every 15 s) -> MinRate; ``"off"`` -> None (no
    floor); a UsageError that shows the expected form otherwise."""
    if text.strip().lower() in ("off", "0", "none"):
        return None
    size, _, seconds = text.partition("/")
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*s?\s*", seconds.lower())
    window = float(found.group(1)) if found else 0.0
    if _bytes(size) < 1 or not 0 < window < float("inf"):
        raise UsageError(
            f"--min-download-rate {text!r} is not a rate: write a size, a slash and seconds, "
            "e.g. --min-download-rate 1KB/15s (at least 1 KB in every 15 s), or off"
        )
    return MinRate(_bytes(size), window)


def download_limits(
    max_size: str | int | None, timeout: float | None, min_rate: str | None = None
) -> dict[str, Any]:
    """The client options for ``--max-output-size``, ``--download-timeout`` and
    ``--min-download-rate`` given."""
    limits: dict[str, Any] = {}
    if max_size is not None:
        limits["max_output_bytes"] = parse_size(max_size)
    if timeout is not None:
        if not 0 < timeout < float("inf"):
            raise UsageError(f"--download-timeout {timeout!r} must be a positive number of seconds")
        limits["download_timeout"] = float(timeout)
    if min_rate is not None:
        limits["min_download_rate"] = parse_rate(min_rate)
    return limits


def parse_shard(text: str) -> Shard:
    """``"2/4"`` -> Shard(2, 4); a UsageError that shows the expected form otherwise."""
    head, sep, tail = text.partition("/")
    try:
        index, count = int(head), int(tail)
    except ValueError:
        index = count = 0
    if not sep or count < 1 or not 1 <= index <= count:
        raise UsageError(
            f"--shard {text!r} is not valid: write I/N with 1 <= I <= N, e.g. --shard 2/4"
        )
    return Shard(index, count)


def shard_of(key: str, count: int) -> int:
    """The 1-based share a key falls into: a hash, so it does not move when tasks are added."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count + 1


def chain_keys(tasks: Iterable[PlannedTask]) -> dict[str, str]:
    """Task id -> the key of its chain: the smallest root id among the tasks it is connected to
    through ``needs``, so that a task and everything downstream of it stay in one share."""
    parent: dict[str, str] = {}

    def find(node: str) -> str:
        while parent.setdefault(node, node) != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    listed = list(tasks)
    for task in listed:
        for upstream in task.upstream_ids:
            a, b = find(task.id), find(upstream)
            if a != b:
                parent[max(a, b)] = min(a, b)
    roots = {t.id for t in listed if not t.upstream_ids}
    best: dict[str, str] = {}
    for task in listed:
        if task.id in roots:
            group = find(task.id)
            best[group] = min(best.get(group, task.id), task.id)
    return {t.id: best.get(find(t.id), find(t.id)) for t in listed}


def shard_tasks(graph: TaskGraph, shard: Shard) -> TaskGraph:
    """The graph restricted to one share. The N shares partition the tasks."""
    keys = chain_keys(graph.tasks)
    kept = tuple(t for t in graph.tasks if shard_of(keys[t.id], shard.count) == shard.index)
    return replace(graph, tasks=kept)

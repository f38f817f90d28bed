"""What a person or a machine sees while a run goes on, and the summary at the end.

The executor calls ``reporter.emit(name, **fields)`` for each event (``task_submitted``,
``task_progress``, ``task_retry``, ``task_succeeded``, ``task_failed``, ``download``, ...).
Reporters:

- ``JsonReporter``: one JSON object per line on stdout, ``{"event": name, "time": ..., ...}``;
- ``PlainReporter``: one readable line per notable event on stderr (when not a terminal);
- ``LiveReporter``: a rich live display on stderr, an overall bar and one bar per task in flight
  with the node progress its WebSocket reports;
- ``QuietReporter``: nothing (the summary is printed by the caller).

Events never carry the API key: they are built from task ids, remote ids, file names and errors
whose messages the client has already cleaned.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from rhflow.record.costs import spend_text
from rhflow.record.manifest import Manifest

if TYPE_CHECKING:  # rich loads only for the live display, on a terminal
    from rich.console import Console
    from rich.progress import TaskID


class Reporter(Protocol):
    #: Whether ``task_progress`` and ``task_node`` events are shown; when not, the executor
    #: does not make them. A reporter passed in without it is taken to show them.
    shows_progress: bool

    def emit(self, event: str, **fields: Any) -> None: ...

    def close(self) -> None: ...


#: The last line after an interrupt, in every output mode (``hint`` of ``run_finished``).
RESUME_HINT = (
    "to resume, run the same command again: finished tasks are kept and tasks still running "
    "remotely are picked up, not paid for again"
)


def now_iso() -> str:
    """The time in UTC, ISO 8601 to the millisecond: ``2024-05-01T12:00:00.123Z``."""
    global _second
    now = time.time()
    second, text = _second  # one read: another thread may replace it
    if second != int(now):  # formatted once per second, not once per event
        second = int(now)
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second = (second, text)
    return f"{text}.{int((now - second) * 1000):03d}Z"


_second: tuple[int, str] = (-1, "")


class QuietReporter:
    shows_progress = False

    def emit(self, event: str, **fields: Any) -> None:
        return None

    def close(self) -> None:
        return None


_ENCODER = json.JSONEncoder(default=str, ensure_ascii=False)  # one, not one per event


class JsonReporter:
    """One JSON event per line, flushed at once so a reader can follow along."""

    shows_progress = True

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout

    def emit(self, event: str, **fields: Any) -> None:
        record = {"event": event, "time": now_iso(), **fields}
        self._stream.write(_ENCODER.encode(record) + "\n")
        self._stream.flush()

    def close(self) -> None:
        return None


def _short(task: object) -> str:
    return str(task)[:10]


def _params(fields: Mapping[str, Any], width: int = 40) -> str:
    """``subject=cat seed=1`` for a task's parameters, clipped to ``width`` characters."""
    params = fields.get("params") or {}
    text = " ".join(f"{key}={value}" for key, value in params.items())
    return text if len(text) <= width else text[: width - 1] + "…"


def describe(event: str, fields: Mapping[str, Any]) -> str | None:
    """The line a person reads for an event, or None for events shown only as bars."""
    name = f"{fields.get('step', '?')}/{_short(fields.get('task', ''))}"
    if event == "run_started":
        total, reused = fields["total"], fields.get("reused", fields.get("skipped", 0))
        return (
            f"{fields['pipeline']}: {total} task{'' if total == 1 else 's'}: {reused} reused, "
            f"{fields['to_run']} to run, {fields['concurrency']} at a time"
        )
    if event == "task_submitted":
        params = f" [{_params(fields, 60)}]" if fields.get("params") else ""
        task_id, attempt = fields.get("task_id"), fields["attempt"]
        return f"{name}{params}: submitted as task {task_id} (attempt {attempt})"
    if event == "task_reattached":
        return f"{name}: following task {fields.get('task_id')} from an earlier run"
    if event == "task_retry":
        return f"{name}: {fields['reason']}; retrying in {fields['delay']:.1f} s"
    if event == "task_busy":
        delay = fields["delay"]
        return f"{name}: platform busy ({fields['reason']}); resubmitting in {delay:.1f} s"
    if event == "task_succeeded":
        return f"{name}: succeeded, {fields['outputs']} file(s)"
    if event == "task_failed":
        return f"{name}: FAILED: {fields['reason']}"
    if event == "task_cancelled":
        return f"{name}: cancelled ({fields['reason']})"
    if event == "task_detached":
        return (
            f"{name}: left running remotely as task {fields.get('task_id')} "
            f"({fields.get('reason', '--detach')}); "
            "the next run picks it up"
        )
    if event == "task_skipped":
        return None
    if event == "download":
        return f"{name}: wrote {fields['path']} ({fields['bytes']} bytes)"
    if event in ("download_retry", "api_retry"):
        return f"{name}: {fields['reason']}; retrying in {fields['delay']:.1f} s"
    if event == "note":
        return f"{name}: {fields['message']}"
    if event == "run_error":
        return f"error: {fields['message']}"
    if event == "run_warning":
        return f"warning: {fields['message']}"
    return None


class PlainReporter:
    """Readable lines on stderr, for logs and pipes (no progress: ``describe`` has no line
    for it)."""

    shows_progress = False

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr

    def emit(self, event: str, **fields: Any) -> None:
        line = describe(event, fields)
        if line is not None:
            self._stream.write(line + "\n")
            self._stream.flush()

    def close(self) -> None:
        return None


class LiveReporter:
    """A rich live display: one overall bar and a bar per task in flight."""

    shows_progress = True

    _LINES = frozenset(
        {
            "run_started",
            "task_failed",
            "task_retry",
            "task_busy",
            "run_error",
            "run_warning",
            "task_cancelled",
            "task_detached",
            "note",
        }
    )

    def __init__(self, console: Console | None = None, *, auto_refresh: bool = True) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._console = console or Console(stderr=True)
        self._auto = auto_refresh
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=self._console,
            transient=False,
            auto_refresh=auto_refresh,
        )
        self._overall: TaskID | None = None
        self._rows: dict[str, TaskID] = {}

    def emit(self, event: str, **fields: Any) -> None:
        if event == "run_started":
            self._progress.start()
            self._overall = self._progress.add_task(
                str(fields["pipeline"]),
                total=fields["total"],
                completed=fields["skipped"],
                info="",
            )
        elif event in ("task_submitted", "task_reattached"):
            self._row(fields, info=f"task {fields.get('task_id')}")
        elif event == "task_progress":
            self._node_progress(fields)
        elif event in ("task_succeeded", "task_failed", "task_cancelled"):
            self._end(fields)
        if event in self._LINES:
            line = describe(event, fields)
            if line:
                self._progress.console.print(line, markup=False, highlight=False)
        if not self._auto:
            self._progress.refresh()

    def _row(self, fields: Mapping[str, Any], info: str) -> None:
        key = str(fields["task"])
        label = f"  {fields.get('step', '?')} {_params(fields) or _short(key)}"
        if key in self._rows:
            self._progress.update(self._rows[key], info=info)
        else:
            self._rows[key] = self._progress.add_task(label, total=None, info=info)

    def _node_progress(self, fields: Mapping[str, Any]) -> None:
        row = self._rows.get(str(fields["task"]))
        if row is not None and fields.get("max"):
            self._progress.update(
                row,
                total=float(fields["max"]),
                completed=float(fields.get("value") or 0),
                info=f"node {fields.get('node')}",
            )

    def _end(self, fields: Mapping[str, Any]) -> None:
        row = self._rows.pop(str(fields["task"]), None)
        if row is not None:
            self._progress.remove_task(row)
        if self._overall is not None:
            self._progress.advance(self._overall)

    def close(self) -> None:
        self._progress.stop()


class SafeReporter:
    """Wraps a reporter so that a failing output (a closed pipe: ``rhflow run --json | head``)
    stops the progress output, not the run."""

    def __init__(self, inner: Reporter) -> None:
        self._inner: Reporter | None = inner
        #: whether anything shows ``task_progress`` and ``task_node`` events (a reporter
        #: without the attribute is assumed to)
        self.shows_progress: bool = getattr(inner, "shows_progress", True)

    def emit(self, event: str, **fields: Any) -> None:
        if self._inner is None:
            return
        try:
            self._inner.emit(event, **fields)
        except (OSError, ValueError):
            self._inner = None
            self.shows_progress = False

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()


def make_reporter(*, quiet: bool = False, as_json: bool = False) -> Reporter:
    """JSON lines, nothing, a live display on a terminal, or plain lines otherwise."""
    if as_json:
        return JsonReporter()
    if quiet:
        return QuietReporter()
    if sys.stderr.isatty():
        return LiveReporter()
    return PlainReporter()


def format_summary(
    manifest: Manifest,
    manifest_path: str,
    *,
    elapsed: float | None = None,
    reused: int | None = None,
    run_coins: float | None = None,
    run_money: Mapping[str, float] | None = None,
) -> str:
    """The closing lines: counts, time, cost, each failure and why, where the manifest is, and
    after an interrupt how to resume. ``reused`` and ``run_coins`` (when given) say what this
    run took from earlier ones and what it paid, beside the folder's total coins; where money
    was charged, ``run_money`` and the folder's money are shown beside the coins."""
    counts = manifest.counts
    parts = [f"{counts.get('succeeded', 0)} succeeded", f"{counts.get('failed', 0)} failed"]
    for status in ("cancelled", "pending", "running"):
        if counts.get(status):
            parts.append(f"{counts[status]} {status}")
    head = f"{manifest.pipeline}: {manifest.status}: " + ", ".join(parts)
    total = counts.get("total", 0)
    head += f" ({total} task{'' if total == 1 else 's'}"
    head += f", {reused} reused)" if reused else ")"
    if elapsed is not None:
        head += f" in {elapsed:.1f} s"
    coins = manifest.cost.get("coins") or 0
    money = manifest.cost.get("money") or {}
    if run_coins is not None:
        paid = dict.fromkeys(money, 0.0) | dict(run_money or {})  # 0 CNY when none this run
        this_run = spend_text(run_coins, paid)
        head += f"; {this_run} this run, {spend_text(coins, money)} in total"
    elif coins or money:
        head += f"; {spend_text(coins, money)}"
    twice = manifest.maybe_twice
    if twice:
        head += f"; {len(twice)} task{'' if len(twice) == 1 else 's'} may have been created twice"
    lines = [head]
    for task in twice:
        lines.append(f"  {task.step}/{task.id[:10]}: {(task.maybe_twice or {}).get('reason')}")
    for error in manifest.errors:
        lines.append(f"  error: {error}")
    for task in manifest.tasks:
        if task.status in ("failed", "cancelled") and task.failure:
            params = ", ".join(f"{k}={v}" for k, v in task.params.items())
            remote = f" (task {task.task_id})" if task.task_id else ""
            lines.append(
                f"  {task.status} {task.step}/{task.id[:10]} [{params}]{remote}: {task.failure}"
            )
    server = manifest.server or {}
    if server.get("emulated"):  # a CI log must not read as RunningHub's work
        lines.append(
            f"server: {server.get('origin')}, an emulator: the outputs are placeholders and "
            "nothing was paid"
        )
    lines.append(f"manifest: {manifest_path}")
    if manifest.status == "interrupted":
        lines.append(RESUME_HINT)
    return "\n".join(lines)

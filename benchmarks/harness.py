"""What every scenario shares: emulators started here, rhflow run as a child process and its
own CPU, wall time and peak memory read from ``os.wait4``, and the emulator's request counts.

rhflow always runs as a separate process (``python -m rhflow ...``), so its CPU seconds
(user + sys of that process alone) are measured apart from the emulator's, which runs in a
thread of the benchmark process.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rhflow.emulator import TEXT_TO_IMAGE, Emulator, EmulatorConfig  # noqa: E402

KEY = "benchmark-key-0123456789abcdef01"
DOWNLOAD_PREFIX = "/files/"
SOCKET_PREFIX = "/ws/"


@dataclass(frozen=True, slots=True)
class Proc:
    """One finished child process: wall seconds, CPU seconds (user + sys), peak RSS in MiB."""

    wall: float
    cpu: float
    rss_mb: float
    code: int


#: Where the children keep rhflow's compiled modules (outside the tree).
PYCACHE = Path(tempfile.gettempdir()) / "rhflow-benchmarks-pycache"


def child_env(*, key: bool = True) -> dict[str, str]:
    """The environment of a child: this tree's rhflow first on the path, the benchmark key
    (or no key at all, so that nothing is asked of a server). Its modules are byte-compiled
    once and kept (in ``PYCACHE``), as an installed package's are: with
    PYTHONDONTWRITEBYTECODE set, every child would compile rhflow's sources again, about
    0.2 s of start-up and CPU no installed rhflow pays."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.pop("RH_API_KEY", None)
    env.pop("RH_BASE_URL", None)
    if key:
        env["RH_API_KEY"] = KEY
    return env


#: Starts the measured command from a small process of its own and writes its wall time, CPU
#: seconds, peak RSS (KiB) and exit code. Started straight from this (large) process, a
#: child's peak RSS would be this process's: Linux carries the peak of the address space a
#: process had before its exec into the new program's, and subprocess uses vfork.
LAUNCHER = """
import os, sys, time
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - started
code = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as out:
    out.write(f"{wall} {usage.ru_utime + usage.ru_stime} {usage.ru_maxrss} {code}")
"""


def run_child(
    argv: Sequence[str], *, stdout: Path | None = None, cwd: Path | None = None, key: bool = True
) -> Proc:
    """Run ``argv`` to its end; its own wall time, CPU seconds and peak RSS."""
    out = open(stdout, "wb") if stdout else subprocess.DEVNULL  # noqa: SIM115
    with tempfile.TemporaryDirectory(prefix="rhflow-bench-usage-") as tmp:
        report = Path(tmp) / "usage"
        try:
            child = subprocess.Popen(
                [sys.executable, "-c", LAUNCHER, str(report), *argv],
                stdout=out,
                stderr=subprocess.PIPE,
                env=child_env(key=key),
                cwd=cwd,
            )
            _, errors = child.communicate()
        finally:
            if stdout:
                out.close()  # type: ignore[union-attr]
        fields = report.read_text().split() if report.exists() else []
    if child.returncode != 0 or len(fields) != 4 or fields[3] != "0":
        raise RuntimeError(
            f"{' '.join(argv)} exited with {fields[3] if fields else child.returncode}: "
            f"{errors.decode()[-2000:]}"
        )
    wall, cpu, rss = float(fields[0]), float(fields[1]), int(fields[2])
    return Proc(wall, cpu, rss / 1024, 0)


def rhflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "rhflow", *args]


def sweep_pipeline(folder: Path, tasks: int, concurrency: int) -> Path:
    """A one-step seed sweep of ``tasks`` 64x64 text-to-image tasks."""
    path = folder / "bench.yaml"
    path.write_text(
        f"""version: 1
name: bench
output: out
concurrency: {concurrency}
steps:
  gen:
    workflow: "{TEXT_TO_IMAGE}"
    matrix: {{seed: {{range: [1, {tasks + 1}]}}}}
    nodes:
      "3": {{seed: "{{{{ seed }}}}"}}
      "5": {{width: 64, height: 64}}
""",
        encoding="utf-8",
    )
    return path


@contextmanager
def emulator(seconds: float, concurrency: int, *, seed: int = 7) -> Iterator[Emulator]:
    """An emulator whose tasks run ``seconds`` each, ``concurrency`` at once per key; every
    other setting is the emulator's default."""
    config = EmulatorConfig(task_seconds=(seconds, seconds), concurrency=concurrency, seed=seed)
    with Emulator(config) as emu:
        yield emu


def queue_mean() -> float:
    """The mean time a task waits QUEUED before it runs, by the emulator's defaults."""
    low, high = EmulatorConfig().queue_seconds
    return (low + high) / 2


def ideal(tasks: int, concurrency: int, seconds: float) -> float:
    """No client can finish sooner: ceil(K/C) rounds of queueing plus running."""
    return math.ceil(tasks / concurrency) * (seconds + queue_mean())


def requests(emu: Emulator) -> tuple[int, int, int]:
    """(API requests, downloads, creates) the emulator served so far; WebSocket connections
    are neither."""
    counts: Mapping[str, int] = emu.stats()["requests"]
    downloads = sum(n for path, n in counts.items() if path.startswith(DOWNLOAD_PREFIX))
    sockets = sum(n for path, n in counts.items() if path.startswith(SOCKET_PREFIX))
    creates = counts.get("/task/openapi/create", 0)
    return sum(counts.values()) - downloads - sockets, downloads, creates


def end_times(emu: Emulator) -> dict[str, float]:
    """Remote taskId -> the wall-clock time the emulator ended it (its clock is monotonic)."""
    board = emu._state.board  # type: ignore[union-attr]
    loop = emu._loop
    assert loop is not None

    async def collect() -> dict[str, float]:
        return {t.task_id: t.finished_at for t in board.tasks.values() if t.finished_at}

    ends = asyncio.run_coroutine_threadsafe(collect(), loop).result(timeout=30)
    offset = time.time() - time.monotonic()
    return {task_id: end + offset for task_id, end in ends.items()}


def events(path: Path) -> list[dict[str, Any]]:
    """The JSON events ``rhflow run --json`` wrote to ``path``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def detection_lags(seen: Sequence[Mapping[str, Any]], ends: Mapping[str, float]) -> list[float]:
    """Per task: the emulator's end -> rhflow's ``task_succeeded`` minus its download time."""
    lags = []
    for event in seen:
        if event["event"] == "task_succeeded" and event.get("task_id") in ends:
            noticed = epoch(event["time"]) - float(event.get("download_seconds") or 0.0)
            lags.append(noticed - ends[event["task_id"]])
    return lags


def percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]

"""Each scenario of ``python -m benchmarks``: run it once, return what it measured (a dict)."""

from __future__ import annotations

import math
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import harness
from benchmarks.plan_scale import write_pipeline

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True, slots=True)
class Sweep:
    """K tasks of T seconds on a key that runs C at once."""

    tasks: int
    concurrency: int
    seconds: float

    @property
    def ideal(self) -> float:
        return harness.ideal(self.tasks, self.concurrency, self.seconds)

    def __str__(self) -> str:
        return f"K={self.tasks} C={self.concurrency} T={self.seconds:g} s"


def rhflow_run(sweep: Sweep, *, websocket: bool = True) -> dict[str, Any]:
    """``rhflow run --json`` on a fresh folder against a fresh emulator."""
    with (
        harness.emulator(sweep.seconds, sweep.concurrency) as emu,
        tempfile.TemporaryDirectory(prefix="rhflow-bench-") as tmp,
    ):
        folder = Path(tmp)
        pipeline = harness.sweep_pipeline(folder, sweep.tasks, sweep.concurrency)
        args = ["run", str(pipeline), "--json", "--base-url", emu.url]
        if not websocket:
            args.append("--no-websocket")
        proc = harness.run_child(harness.rhflow(*args), stdout=folder / "events.jsonl", cwd=folder)
        api, downloads, creates = harness.requests(emu)
        seen = harness.events(folder / "events.jsonl")
        lags = harness.detection_lags(seen, harness.end_times(emu))
    succeeded = sum(e["event"] == "task_succeeded" for e in seen)
    if succeeded != sweep.tasks:
        raise RuntimeError(f"rhflow run {sweep}: {succeeded} of {sweep.tasks} tasks succeeded")
    return {
        "scenario": str(sweep),
        "websocket": websocket,
        "wall": proc.wall,
        "ideal": sweep.ideal,
        "ratio": proc.wall / sweep.ideal,
        "cpu": proc.cpu,
        "cpu_ms_per_task": proc.cpu / sweep.tasks * 1000,
        "rss_mb": proc.rss_mb,
        "requests_per_task": api / sweep.tasks,
        "downloads_per_task": downloads / sweep.tasks,
        "creates": creates,
        "events_per_task": len(seen) / sweep.tasks,
        "lag_p50": harness.percentile(lags, 0.5),
        "lag_p90": harness.percentile(lags, 0.9),
        "lags": len(lags),
    }


def floor_run(sweep: Sweep) -> dict[str, Any]:
    """The plain asyncio client (benchmarks/floor_client.py) on the same kind of emulator."""
    with (
        harness.emulator(sweep.seconds, sweep.concurrency) as emu,
        tempfile.TemporaryDirectory(prefix="rhflow-bench-") as tmp,
    ):
        argv = [
            sys.executable,
            str(HERE / "floor_client.py"),
            "--base-url",
            emu.url,
            "--tasks",
            str(sweep.tasks),
            "--concurrency",
            str(sweep.concurrency),
            "--out",
            tmp,
        ]
        proc = harness.run_child(argv)
        api, _, _ = harness.requests(emu)
    return {
        "scenario": str(sweep),
        "wall": proc.wall,
        "ratio": proc.wall / sweep.ideal,
        "cpu_ms_per_task": proc.cpu / sweep.tasks * 1000,
        "requests_per_task": api / sweep.tasks,
    }


def baselines(batch_tasks: int, loop_tasks: int, seconds: float) -> dict[str, Any]:
    """The API document's batch example and the plugin-style loop, side by side (both spend
    their time asleep), each on its own emulator."""
    found: dict[str, Any] = {}

    def batch(url: str, tmp: str) -> list[str]:
        script = str(HERE / "batch_script.py")
        return [sys.executable, script, "--base-url", url, "--tasks", str(batch_tasks)]

    def loop(url: str, tmp: str) -> list[str]:
        script = str(HERE / "plugin_loop.py")
        return [sys.executable, script, "--base-url", url, "--tasks", str(loop_tasks), "--out", tmp]

    jobs = [("batch_script", batch, batch_tasks), ("plugin_loop", loop, loop_tasks)]
    threads = [
        threading.Thread(target=_baseline, args=(name, argv, tasks, seconds, found))
        for name, argv, tasks in jobs
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    missing = [name for name, _, _ in jobs if name not in found]
    if missing:
        raise RuntimeError(f"baseline(s) failed: {', '.join(missing)}")
    return found


def _baseline(
    name: str,
    argv: Callable[[str, str], list[str]],
    tasks: int,
    seconds: float,
    found: dict[str, Any],
) -> None:
    with harness.emulator(seconds, 50) as emu, tempfile.TemporaryDirectory() as tmp:
        proc = harness.run_child(argv(emu.url, tmp))
        api, downloads, _ = harness.requests(emu)
    found[name] = {
        "tasks": tasks,
        "wall": proc.wall,
        "tasks_per_second": tasks / proc.wall,
        "cpu_ms_per_task": proc.cpu / tasks * 1000,
        "requests_per_task": api / tasks,
        "downloads_per_task": downloads / tasks,
    }


def planning(axes: list[list[int]]) -> dict[str, Any]:
    """``rhflow plan --json > /dev/null`` for sweeps of several sizes; the growth exponents of
    time and peak RSS."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="rhflow-bench-") as tmp:
        for sizes in axes:
            path = write_pipeline(Path(tmp), sizes)
            argv = harness.rhflow("plan", "--json", "--max-tasks", str(math.prod(sizes)), str(path))
            proc = harness.run_child(argv, key=False)
            rows.append({"tasks": math.prod(sizes), "wall": proc.wall, "rss_mb": proc.rss_mb})
    return {
        "runs": rows,
        # between the two largest sizes, where start-up (about 0.25 s) weighs least
        "exponent": _exponent(rows[-2], rows[-1], "wall"),
        "exponent_all": _exponent(rows[0], rows[-1], "wall"),
        "rss_exponent": _exponent(rows[-2], rows[-1], "rss_mb"),
    }


def _exponent(first: dict[str, Any], last: dict[str, Any], key: str) -> float:
    """e in ``key ~ tasks^e`` between two runs."""
    return math.log(last[key] / first[key]) / math.log(last["tasks"] / first["tasks"])


def resume(sweep: Sweep) -> dict[str, Any]:
    """A finished pipeline run again: creates, requests and wall time of the second run."""
    with (
        harness.emulator(sweep.seconds, sweep.concurrency) as emu,
        tempfile.TemporaryDirectory(prefix="rhflow-bench-") as tmp,
    ):
        pipeline = harness.sweep_pipeline(Path(tmp), sweep.tasks, sweep.concurrency)
        argv = harness.rhflow("run", str(pipeline), "--quiet", "--base-url", emu.url)
        harness.run_child(argv, cwd=Path(tmp))
        before_api, before_files, before_creates = harness.requests(emu)
        proc = harness.run_child(argv, cwd=Path(tmp))
        api, files, creates = harness.requests(emu)
    return {
        "scenario": str(sweep),
        "wall": proc.wall,
        "creates": creates - before_creates,
        "requests": api - before_api + files - before_files,
    }


def startup(repeat: int) -> dict[str, Any]:
    """Median wall time of ``rhflow --help`` and ``rhflow validate pipelines/sweep.yaml``."""
    sweep = str(harness.ROOT / "pipelines" / "sweep.yaml")
    found = {}
    for name, args in (("help", ["--help"]), ("validate", ["validate", sweep])):
        walls = [harness.run_child(harness.rhflow(*args), key=False).wall for _ in range(repeat)]
        found[name] = statistics.median(walls)
    found["python"] = statistics.median(
        harness.run_child([sys.executable, "-c", "pass"]).wall for _ in range(repeat)
    )
    return found


def commit_seconds() -> float:
    """How long the store takes to commit a created task's remote id (the rest of the window
    in which a kill -9 could lose a created task)."""
    from rhflow.record.store import Store, TaskRecord

    times = []
    with tempfile.TemporaryDirectory() as tmp, Store.for_output(Path(tmp)) as store:
        store.save(TaskRecord("t", "gen", "pending"))
        for n in range(50):
            started = time.perf_counter()
            store.update("t", remote_id=str(n), status="running")
            times.append(time.perf_counter() - started)
    return statistics.median(times)

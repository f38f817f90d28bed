"""``python -m benchmarks``: every figure of rhflow's performance, measured in one run.

Starts its own emulators (their defaults untouched, but for task duration and concurrency per
key), runs ``rhflow`` as a child process so that its CPU and memory are its own, runs the
baselines on the same emulator code in the same run, prints a table (figure | measured |
target | baseline) and writes ``benchmarks/results.json``. Each figure is a ratio or a count
from this run; absolute times stand beside it.

    python -m benchmarks              # every scenario, about 4 minutes on 2 cores
    python -m benchmarks --quick      # smaller sizes, about 30 s: a smoke test
    python -m benchmarks --only run   # a subset: run, polling, scale, baselines, plan, resume,
                                      # startup
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks import scenarios
from benchmarks.scenarios import Sweep

RESULTS = Path(__file__).resolve().parent / "results.json"
GROUPS = ("run", "polling", "scale", "baselines", "plan", "resume", "startup")


@dataclass(frozen=True, slots=True)
class Sizes:
    main: Sweep  # the K=500 scenario
    small: Sweep  # start-up included
    scale: Sweep
    resume: Sweep
    batch_tasks: int
    loop_tasks: int
    plan_axes: list[list[int]]
    repeat: int


FULL = Sizes(
    main=Sweep(500, 50, 1.0),
    small=Sweep(100, 20, 0.5),
    scale=Sweep(5000, 200, 1.0),
    resume=Sweep(1000, 200, 0.2),
    batch_tasks=9,
    loop_tasks=3,
    plan_axes=[[10, 100, 10], [100, 100, 10], [100, 1000, 10]],
    repeat=5,
)
QUICK = Sizes(
    main=Sweep(100, 20, 0.5),
    small=Sweep(100, 20, 0.5),
    scale=Sweep(400, 100, 0.5),
    resume=Sweep(100, 50, 0.2),
    batch_tasks=3,
    loop_tasks=1,
    plan_axes=[[10, 10, 10], [10, 100, 10]],
    repeat=2,
)


@dataclass(frozen=True, slots=True)
class Figure:
    """One line of the table. ``ok`` is None for a figure without a target."""

    name: str
    measured: float
    unit: str
    target: str
    ok: bool | None
    baseline: str
    detail: str = ""

    def cells(self) -> tuple[str, str, str, str]:
        value = f"{self.measured:.3g}{self.unit}"
        if self.detail:
            value += f" ({self.detail})"
        mark = {True: " ok", False: " MISSED", None: ""}[self.ok]
        return self.name, value, self.target + mark, self.baseline


def measure(sizes: Sizes, groups: set[str]) -> dict[str, Any]:
    """Run the chosen scenarios; their raw results by name."""
    runs: dict[str, Any] = {}
    steps = [
        ("run", "main", lambda: scenarios.rhflow_run(sizes.main)),
        ("run", "small", lambda: scenarios.rhflow_run(sizes.small)),
        ("run", "floor_main", lambda: scenarios.floor_run(sizes.main)),
        ("run", "floor_small", lambda: scenarios.floor_run(sizes.small)),
        ("polling", "polling", lambda: scenarios.rhflow_run(sizes.main, websocket=False)),
        ("scale", "scale", lambda: scenarios.rhflow_run(sizes.scale)),
        ("scale", "floor_scale", lambda: scenarios.floor_run(sizes.scale)),
        (
            "baselines",
            "baselines",
            lambda: scenarios.baselines(sizes.batch_tasks, sizes.loop_tasks, sizes.main.seconds),
        ),
        ("plan", "plan", lambda: scenarios.planning(sizes.plan_axes)),
        ("resume", "resume", lambda: scenarios.resume(sizes.resume)),
        ("startup", "startup", lambda: scenarios.startup(sizes.repeat)),
        ("resume", "commit_seconds", scenarios.commit_seconds),
    ]
    for group, name, action in steps:
        if group in groups:
            started = time.monotonic()
            print(f"measuring {name} ...", file=sys.stderr, flush=True)
            try:
                runs[name] = action()
            except RuntimeError as exc:  # one scenario failing leaves the others' figures
                runs.setdefault("errors", {})[name] = str(exc)
                print(f"  FAILED: {exc}", file=sys.stderr, flush=True)
            print(f"  {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    return runs


def figures(runs: dict[str, Any], sizes: Sizes) -> list[Figure]:
    found: list[Figure] = []
    for make in (
        _makespan,
        _requests,
        _latency,
        _baselines,
        _cpu,
        _plan,
        _resume,
        _commit,
        _startup,
    ):
        found.extend(make(runs, sizes))
    return found


def _at_most(value: float, limit: float) -> bool:
    return value <= limit


def _floor(runs: dict[str, Any], name: str) -> str:
    floor = runs.get(name)
    return f"asyncio floor {floor['ratio']:.2f}x" if floor else "-"


def _makespan(runs: dict[str, Any], sizes: Sizes) -> list[Figure]:
    found = []
    for name, target, floor in (
        ("main", 1.05, "floor_main"),
        ("small", 1.2, "floor_small"),
        ("polling", 1.15, "floor_main"),
        ("scale", 1.1, "floor_scale"),
    ):
        run = runs.get(name)
        if run is None:
            continue
        mode = "WebSocket" if run["websocket"] else "polling"
        found.append(
            Figure(
                f"makespan / ideal, {run['scenario']}, {mode}",
                run["ratio"],
                "x",
                f"<= {target}",
                _at_most(run["ratio"], target),
                _floor(runs, floor),
                f"{run['wall']:.1f} s of {run['ideal']:.1f}",
            )
        )
    if "scale" in runs:
        scale = runs["scale"]
        found.append(
            Figure(
                f"peak RSS, {scale['scenario']}",
                scale["rss_mb"],
                " MB",
                "<= 200 MB",
                _at_most(scale["rss_mb"], 200),
                "-",
            )
        )
    return found


def _requests(runs: dict[str, Any], sizes: Sizes) -> list[Figure]:
    found = []
    base = runs.get("baselines", {})
    others = ", ".join(f"{k} {v['requests_per_task']:.2f}" for k, v in base.items()) or "-"
    for name, target in (("main", 2.2), ("polling", 4.0)):
        run = runs.get(name)
        if run is not None:
            mode = "WebSocket" if run["websocket"] else "polling"
            found.append(
                Figure(
                    f"API requests per task (downloads apart), {mode}",
                    run["requests_per_task"],
                    "",
                    f"<= {target}",
                    _at_most(run["requests_per_task"], target),
                    others,
                    f"+{run['downloads_per_task']:.2f} downloads",
                )
            )
    return found


def _latency(runs: dict[str, Any], sizes: Sizes) -> list[Figure]:
    found = []
    if "main" in runs:
        run = runs["main"]
        found.append(
            Figure(
                f"end -> noticed p50, WebSocket, {run['scenario']}",
                run["lag_p50"] * 1000,
                " ms",
                "<= 50 ms",
                _at_most(run["lag_p50"], 0.05),
                "-",
                f"p90 {run['lag_p90'] * 1000:.0f} ms",
            )
        )
    if "polling" in runs:
        run = runs["polling"]
        share = run["lag_p50"] / sizes.main.seconds
        found.append(
            Figure(
                f"end -> noticed p50 / T, polling, {run['scenario']}",
                share * 100,
                " %",
                "<= 10 %",
                _at_most(share, 0.10),
                "-",
                f"p50 {run['lag_p50'] * 1000:.0f} ms",
            )
        )
    return found


def _baselines(runs: dict[str, Any], sizes: Sizes) -> list[Figure]:
    if "baselines" not in runs or "main" not in runs:
        return []
    main = runs["main"]
    rate = sizes.main.tasks / main["wall"]
    found = []
    for name, label in (
        ("batch_script", "API document's batch script"),
        ("plugin_loop", "plugin-style loop"),
    ):
        base = runs["baselines"][name]
        found.append(
            Figure(
                f"speed-up (tasks/s) over the {label}",
                rate / base["tasks_per_second"],
                "x",
                "-",
                None,
                f"{base['tasks_per_second']:.2f} tasks/s, {base['requests_per_task']:.2f} req/task",
                f"rhflow {rate:.1f} tasks/s",
            )
        )
    return found


def _cpu(runs: dict[str, Any], sizes: Sizes) -> list[Figure]:
    found = []
    base = runs.get("baselines", {})
    floor = runs.get("floor_main")
    parts = [f"floor {floor['cpu_ms_per_task']:.1f}"] if floor else []
    parts += [f"{k} {v['cpu_ms_per_task']:.1f}" for k, v in base.items()]
    if "main" in runs:
        run = runs["main"]
        found.append(
            Figure(
                f"rhflow CPU per task, {run['scenario']}",
                run["cpu_ms_per_task"],
                " ms",
                "<= 3 ms",
                _at_most(run["cpu_ms_per_task"], 3.0),
                ", ".join(parts) or "-",
                f"{run['cpu']:.2f} s in all",
            )
        )
    if "main" in runs and "scale" in runs:
        growth = runs["scale"]["cpu_ms_per_task"] / runs["main"]["cpu_ms_per_task"]
        found.append(
            Figure(
                f"CPU per task at K={sizes.scale.tasks} / at K={sizes.main.tasks}",
                growth,
                "x",
                "<= 1.2 (linear)",
                _at_most(growth, 1.2),
                "-",
                f"{runs['scale']['cpu_ms_per_task']:.1f} ms",
            )
        )
    for name in ("main", "scale"):
        if name in runs:
            found.append(
                Figure(
                    f"--json events per task, {runs[name]['scenario']}",
                    runs[name]["events_per_task"],
                    "",
                    "-",
                    None,
                    "-",
                )
            )
    return found


def _plan(runs: dict[str, Any], sizes: Sizes) -> list[Figure]:
    if "plan" not in runs:
        return []
    plan = runs["plan"]
    largest = max(plan["runs"], key=lambda r: r["tasks"])
    at = next((r for r in plan["runs"] if r["tasks"] == 100_000), largest)
    tasks = f"{at['tasks']:,} tasks"
    sizes_text = ", ".join(f"{r['tasks']:,}: {r['wall']:.2f} s" for r in plan["runs"])
    sizes_text += f"; from {plan['runs'][0]['tasks']:,}: {plan['exponent_all']:.2f}"
    memory = f"{largest['tasks']:,} tasks: {largest['rss_mb']:.0f} MB"
    memory += f", growth K^{plan['rss_exponent']:.2f}"
    return [
        Figure(f"plan --json, {tasks}: wall", at["wall"], " s", "<= 3 s", at["wall"] <= 3, "-"),
        Figure(
            f"plan --json, {tasks}: peak RSS",
            at["rss_mb"],
            " MB",
            "<= 300 MB",
            at["rss_mb"] <= 300,
            "-",
            memory,
        ),
        Figure(
            "plan growth exponent (time ~ K^e, two largest sizes)",
            plan["exponent"],
            "",
            "~1 (linear)",
            plan["exponent"] <= 1.15,
            "-",
            sizes_text,
        ),
    ]


def _resume(runs: dict[str, Any], sizes: Sizes) -> list[Figure]:
    if "resume" not in runs:
        return []
    run = runs["resume"]
    return [
        Figure(
            f"resume no-op, {run['scenario']}: creates",
            run["creates"],
            "",
            "0",
            run["creates"] == 0,
            "-",
        ),
        Figure(
            f"resume no-op, {run['scenario']}: wall",
            run["wall"],
            " s",
            "<= 2 s",
            run["wall"] <= 2,
            "-",
            f"{run['requests']} requests sent",
        ),
    ]


def _commit(runs: dict[str, Any], sizes: Sizes) -> list[Figure]:
    if "commit_seconds" not in runs:
        return []
    text = "state-store commit of a created task's id (the kill -9 window after create)"
    return [Figure(text, runs["commit_seconds"] * 1000, " ms", "-", None, "-")]


def _startup(runs: dict[str, Any], sizes: Sizes) -> list[Figure]:
    if "startup" not in runs:
        return []
    run = runs["startup"]
    bare = f"python -c pass {run['python']:.3f} s"
    return [
        Figure("rhflow --help", run["help"], " s", "<= 0.15 s", run["help"] <= 0.15, bare),
        Figure(
            "rhflow validate pipelines/sweep.yaml",
            run["validate"],
            " s",
            "<= 0.4 s",
            run["validate"] <= 0.4,
            bare,
        ),
    ]


def table(found: list[Figure]) -> str:
    rows = [("figure", "measured", "target", "baseline"), *(f.cells() for f in found)]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes (about 30 s)")
    parser.add_argument("--only", action="append", choices=GROUPS, help="run only these groups")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    started = time.monotonic()
    load_before = os.getloadavg()
    runs = measure(sizes, set(args.only or GROUPS))
    found = figures(runs, sizes)
    print(table(found))
    result = {
        "mode": "quick" if args.quick else "full",
        "seconds": round(time.monotonic() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            # the 1-minute load average before and after: other work on the machine
            "load": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        },
        "figures": [asdict(f) for f in found],
        "runs": runs,
    }
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for name, error in runs.get("errors", {}).items():
        print(f"not measured: {name}: {error}")
    load = result["machine"]["load"]
    print(
        f"{len(found)} figures in {result['seconds']} s (load average {load[0]:g} before, "
        f"{load[1]:g} after); written to {args.output}"
    )
    return 1 if runs.get("errors") else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Requests per task and wall time of ``rhflow run`` against the emulator, with and without the
WebSocket, against the ideal and against a naive fixed-interval poller run in the same process.

Time is scaled down so the benchmark takes seconds: with ``--scale 20`` (the default) the
emulator's 0.5-1.5 s tasks stand for 10-30 s tasks, rhflow's poll policy is divided by 20, and
the naive baseline polls every 5 s / 20 = 0.25 s. Request counts are what the emulator served
(``GET /emulator/stats``); the ideal is 1 create + 1 outputs + 1 download per task.

    python benchmarks/requests_per_task.py            # 40 tasks, 8 at a time
    python benchmarks/requests_per_task.py --tasks 100 --concurrency 16
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rhflow.api.client import Client
from rhflow.emulator import Emulator, EmulatorConfig
from rhflow.execute.runner import run_pipeline
from rhflow.execute.scheduling import PollPolicy

KEY = "benchmark-key-0123456789abcdef01"
CREATE_TIMES: list[float] = []
CREATE, OUTPUTS, FILES = "/task/openapi/create", "/task/openapi/outputs", "/files/{task_id}/{name}"


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    tasks: int
    wall: float
    create: int
    outputs: int
    downloads: int

    @property
    def api(self) -> int:
        return self.create + self.outputs + self.downloads


def pipeline_text(tasks: int, concurrency: int) -> str:
    return f"""
version: 1
name: bench
output: out
concurrency: {concurrency}
steps:
  gen:
    workflow: "1904136902449209346"
    matrix: {{seed: {{range: [1, {tasks + 1}]}}}}
    nodes:
      "3": {{seed: "{{{{ seed }}}}"}}
      "5": {{width: 64, height: 64}}
"""


def emulator(scale: float, websocket: bool, seed: int) -> Emulator:
    seconds = (10.0 / scale, 30.0 / scale)
    return Emulator(EmulatorConfig(task_seconds=seconds, websocket=websocket, seed=seed))


def row(name: str, tasks: int, wall: float, emu: Emulator) -> Row:
    counts = emu.stats()["requests"]
    return Row(
        name, tasks, wall, counts.get(CREATE, 0), counts.get(OUTPUTS, 0), counts.get(FILES, 0)
    )


def run_rhflow(name: str, args: argparse.Namespace, websocket: bool) -> Row:
    poll = PollPolicy().scaled(args.scale)
    with emulator(args.scale, websocket, args.seed) as emu, tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(pipeline_text(args.tasks, args.concurrency))
        started = time.monotonic()
        with Client(KEY, emu.url) as client:
            result = run_pipeline(path, out=Path(tmp) / "out", client=client, poll=poll)
        wall = time.monotonic() - started
        assert result.manifest.status == "succeeded", result.manifest.errors
        return row(name, args.tasks, wall, emu)


def run_naive(args: argparse.Namespace) -> Row:
    """Create, then poll outputs every 5 s (scaled) until done, then download: per task."""
    interval = 5.0 / args.scale
    with emulator(args.scale, False, args.seed) as emu, tempfile.TemporaryDirectory() as tmp:
        client = Client(KEY, emu.url)

        def one(seed: int) -> None:
            nodes = [{"nodeId": "3", "fieldName": "seed", "fieldValue": seed}]
            sent = time.perf_counter()
            created = client.create_task("1904136902449209346", nodes)
            CREATE_TIMES.append(time.perf_counter() - sent)
            while True:
                time.sleep(interval)
                outputs = client.outputs(created.task_id)
                if outputs.done:
                    break
            for i, output in enumerate(outputs.outputs):
                client.download(output.file_url, Path(tmp) / f"{seed}-{i}.png")

        started = time.monotonic()
        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(one, range(1, args.tasks + 1)))
        wall = time.monotonic() - started
        client.close()
        return row(f"naive {5.0:g} s poller", args.tasks, wall, emu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--scale", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rows = [
        run_rhflow("rhflow, websocket", args, websocket=True),
        run_rhflow("rhflow, polling", args, websocket=False),
        run_naive(args),
    ]
    ideal = 3 * args.tasks
    naive = rows[-1]
    print(f"{args.tasks} tasks of 10-30 s (scaled 1/{args.scale:g}), {args.concurrency} at a time")
    print(
        f"{'scenario':<22}{'wall s':>8}{'create':>8}{'outputs':>9}{'files':>7}"
        f"{'req/task':>10}{'x ideal':>9}{'x naive':>9}"
    )
    for r in rows:
        print(
            f"{r.name:<22}{r.wall:>8.2f}{r.create:>8}{r.outputs:>9}{r.downloads:>7}"
            f"{r.api / r.tasks:>10.2f}{r.api / ideal:>9.2f}{r.api / naive.api:>9.2f}"
        )
    print(f"ideal: 1 create + 1 outputs + 1 download = 3 requests per task ({ideal} in all)")
    print(
        f"create round trip on loopback: median {statistics.median(CREATE_TIMES) * 1000:.1f} ms; "
        f"recording its answer in the state store: median {commit_time() * 1000:.2f} ms"
    )


def commit_time() -> float:
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


if __name__ == "__main__":
    main()

"""Plan a 100,000-task sweep: seconds, tasks per second, peak memory, and the ratio against a
baseline measured in the same run (just building the parameter dicts of the sweep).

    python benchmarks/plan_scale.py [--tasks-per-axis 100 100 10] [--trace]

``--trace`` measures peak Python allocations with tracemalloc (slower); without it the peak
resident set size of the process is reported.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rhflow.pipeline.loader import load_pipeline
from rhflow.pipeline.sweeps import expand_sweep
from rhflow.planning.planner import plan

PIPELINE = """\
version: 1
name: scale
vars: {style: watercolor}
steps:
  gen:
    workflow: "1904136902449209346"
    workflow_file: @WORKFLOW@
    matrix:
      subject: @SUBJECTS@
      seed: {range: [0, @SEEDS@]}
      steps: @STEPS@
    nodes:
      "6": {text: "a {{ subject }}, {{ vars.style }}"}
      "3": {seed: "{{ seed }}", steps: "{{ steps }}"}
      "5": {width: 64, height: 64}
    outputs: "{{ subject }}/{{ seed | zpad(5) }}-s{{ steps }}-{{ index }}.{{ ext }}"
"""


def write_pipeline(folder: Path, axes: list[int]) -> Path:
    subjects = [f"subject{i}" for i in range(axes[0])]
    steps = list(range(1, axes[2] + 1))
    workflow = Path(__file__).resolve().parent.parent / "pipelines" / "workflows" / "t2i.json"
    text = (
        PIPELINE.replace("@WORKFLOW@", str(workflow))
        .replace("@SUBJECTS@", str(subjects))
        .replace("@SEEDS@", str(axes[1]))
        .replace("@STEPS@", str(steps))
    )
    path = folder / "scale.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _timed(func: object) -> tuple[object, float]:
    gc.collect()
    start = time.perf_counter()
    result = func()  # type: ignore[operator]
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks-per-axis", nargs=3, type=int, default=[100, 100, 10])
    parser.add_argument("--trace", action="store_true", help="measure memory with tracemalloc")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = load_pipeline(write_pipeline(Path(tmp), args.tasks_per_axis))
        sweep = pipeline.steps[0].sweep
        combos, baseline = _timed(lambda: list(expand_sweep(sweep)))
        count = len(combos)  # type: ignore[arg-type]
        del combos
        if args.trace:
            tracemalloc.start()
        graph, seconds = _timed(lambda: plan(pipeline))
        peak = tracemalloc.get_traced_memory()[1] if args.trace else None
        if args.trace:
            tracemalloc.stop()
    tasks = len(graph.tasks)  # type: ignore[attr-defined]
    assert tasks == count, (tasks, count)
    assert not graph.warnings, graph.warnings  # type: ignore[attr-defined]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"tasks:            {tasks}")
    print(f"plan:             {seconds:.2f} s ({tasks / seconds:,.0f} tasks/s)")
    print(f"baseline (dicts): {baseline:.3f} s")
    print(f"ratio:            {seconds / baseline:.1f}x the baseline")
    if peak is not None:
        print(f"peak traced:      {peak / 2**20:.0f} MiB ({peak / tasks:,.0f} bytes/task)")
    print(f"peak RSS:         {rss_mb:.0f} MiB")


if __name__ == "__main__":
    main()

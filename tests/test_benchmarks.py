"""``python -m benchmarks --quick`` runs every scenario, prints the table and writes the JSON.

Only the shape is checked, and that every figure was measured: speed is the benchmark's to
report, never a test's to assert.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURES = (
    "makespan / ideal",
    "peak RSS",
    "API requests per task (downloads apart), WebSocket",
    "API requests per task (downloads apart), polling",
    "end -> noticed p50, WebSocket",
    "end -> noticed p50 / T, polling",
    "speed-up (tasks/s) over the API document's batch script",
    "speed-up (tasks/s) over the plugin-style loop",
    "rhflow CPU per task",
    "CPU per task at K=",
    "--json events per task",
    "plan --json",
    "plan growth exponent",
    "resume no-op",
    "rhflow --help",
    "rhflow validate pipelines/sweep.yaml",
)


def test_the_quick_benchmark_measures_every_figure(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--output", str(output)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(output.read_text(encoding="utf-8"))
    assert result["mode"] == "quick"
    loads = result["machine"]["load"]  # what else ran on the machine, for reading the figures
    assert len(loads) == 2 and all(isinstance(x, (int, float)) and x >= 0 for x in loads)
    figures = result["figures"]
    names = [f["name"] for f in figures]
    for expected in FIGURES:
        assert any(name.startswith(expected) for name in names), (expected, names)
    for figure in figures:
        assert set(figure) == {"name", "measured", "unit", "target", "ok", "baseline", "detail"}
        assert isinstance(figure["measured"], (int, float)), figure
        assert math.isfinite(figure["measured"]), figure
        assert figure["ok"] in (True, False, None)
        assert (figure["ok"] is None) == (figure["target"] == "-"), figure
    makespans = [f for f in figures if f["name"].startswith("makespan")]
    assert {"WebSocket", "polling"} <= {f["name"].rsplit(", ", 1)[1] for f in makespans}
    lines = done.stdout.splitlines()
    assert [c.strip() for c in lines[0].split("|")] == ["figure", "measured", "target", "baseline"]
    rows = [line for line in lines[2:] if " | " in line]
    assert len(rows) == len(figures)
    for row, figure in zip(rows, figures, strict=True):
        assert row.startswith(figure["name"])
    assert lines[-1].endswith(f"written to {output}")

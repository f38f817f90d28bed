"""Sweeps under faults, against the emulator: transient API faults and failed tasks, and a run
far wider than the platform's concurrency.

Each test asserts exact outcomes from the manifest, the run's events and the emulator's own
statistics: every task that can finish does, each failed task carries the platform's reason,
no task is created twice, no file is downloaded twice. The default suite runs small versions;
the sizes the issue names (200 tasks, concurrency 100 against 10) are soak tests:

    python -m pytest -q -m soak tests/test_faults.py
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rhflow.api.client import Client
from rhflow.emulator import Emulator
from rhflow.execute.runner import RunResult, run_pipeline
from rhflow.execute.scheduling import Backoff, PollPolicy

EXAMPLES = Path(__file__).parent / "examples" / "workflows"
FAST = {
    "api_backoff": Backoff(base=0.02, cap=0.1),
    "busy_backoff": Backoff(base=0.05, cap=0.2),
    "retry_backoff": Backoff(base=0.02, cap=0.1),
    "api_retries": 8,  # 10% faults: eight in a row on one call is about one in 10^8
}
QUICK_POLL = PollPolicy(first=0.1, factor=1.5, cap=0.4)
OOM = "node 3 (KSampler) raised torch.OutOfMemoryError"


def sweep(tmp_path: Path, tasks: int, concurrency: int) -> Path:
    shutil.copy(EXAMPLES / "t2i.json", tmp_path / "t2i.json")
    path = tmp_path / "faults.yaml"
    path.write_text(
        f"""
version: 1
name: faults
output: out
concurrency: {concurrency}
steps:
  gen:
    workflow: "1904136902449209346"
    workflow_file: t2i.json
    matrix:
      seed: {{range: [1, {tasks + 1}]}}
    nodes:
      "3": {{seed: "{{{{ seed }}}}"}}
      "5": {{width: 64, height: 64}}
    outputs: "{{{{ seed }}}}-{{{{ index }}}}.{{{{ ext }}}}"
    retries: 0
"""
    )
    return path


def run(emu: Emulator, path: Path, key: str) -> tuple[RunResult, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []

    class Collect:
        def emit(self, event: str, **fields: Any) -> None:
            events.append({"event": event, **fields})

        def close(self) -> None:
            return None

    with Client(key, emu.url) as client:
        result = run_pipeline(
            path,
            client=client,
            reporter=Collect(),
            poll=QUICK_POLL,
            execute_options=FAST,
            out=path.parent / "out",
        )
    return result, events


def check_faulty_sweep(emu: Emulator, result: RunResult, events: list[dict[str, Any]]) -> None:
    """Every finishable task finished, each failure is the platform's, nothing twice."""
    stats = emu.stats()
    manifest, tasks = result.manifest, stats["tasks"]
    by_status = Counter(t.status for t in manifest.tasks)
    assert tasks["duplicates"] == 0
    assert tasks["created"] == len(manifest.tasks)
    assert by_status == {"succeeded": tasks["succeeded"], "failed": tasks["failed"]}
    remote_failed = {r["taskId"] for r in stats["task_records"] if r["status"] == "FAILED"}
    for task in manifest.tasks:
        if task.status == "failed":
            assert task.task_id in remote_failed
            assert task.failure is not None and task.failure.startswith(OOM)
        else:
            (output,) = task.outputs
            assert output.path and (result.manifest_path.parent / output.path).is_file()
    downloads = Counter(e["path"] for e in events if e["event"] == "download")
    assert sorted(downloads.values()) == [1] * tasks["succeeded"]
    assert stats["requests"]["/files/{task_id}/{name}"] == tasks["succeeded"]
    injected = stats["faults"]["injected"]
    assert injected.get("http_500", 0) and injected.get("code_1011", 0) and injected.get("drop", 0)
    assert [e for e in events if e["event"] == "api_retry"] != []
    print(  # the figures, with -s
        f"\n{len(manifest.tasks)} tasks: {by_status['succeeded']} succeeded, "
        f"{by_status['failed']} failed with the platform's reason; faults {injected}, "
        f"{len([e for e in events if e['event'] == 'api_retry'])} requests retried; "
        f"{tasks['duplicates']} created twice; {sum(downloads.values())} downloads of "
        f"{len(downloads)} files"
    )


def check_wide_run(
    emu: Emulator, result: RunResult, events: list[dict[str, Any]], concurrency: int
) -> None:
    """Every task succeeded, once, and the platform's busy answers were only waited out."""
    stats = emu.stats()
    assert result.manifest.status == "succeeded", [t.failure for t in result.manifest.tasks]
    assert stats["tasks"]["created"] == stats["tasks"]["succeeded"] == len(result.manifest.tasks)
    assert stats["tasks"]["duplicates"] == 0
    assert stats["peak_active"] <= emu.config.concurrency
    busy = [e for e in events if e["event"] == "task_busy"]
    assert busy and all("421 TASK_QUEUE_MAXED" in e["reason"] for e in busy)
    assert all(t.attempts == 1 for t in result.manifest.tasks)
    print(  # the figures, with -s
        f"\n{len(result.manifest.tasks)} tasks at concurrency {concurrency} "
        f"against {emu.config.concurrency}: all succeeded, {len(busy)} busy answers waited "
        f"out, peak {stats['peak_active']} active, {stats['tasks']['duplicates']} created twice"
    )


def test_a_sweep_under_transient_faults_and_failed_tasks(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator(error_rate=0.1, fail_rate=0.05, seed=7, task_seconds=(0.1, 0.2))
    result, events = run(emu, sweep(tmp_path, 40, 10), api_key)
    check_faulty_sweep(emu, result, events)


def test_a_run_wider_than_the_platform_absorbs_its_busy_answers(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator(concurrency=4, seed=3, task_seconds=(0.1, 0.2))
    result, events = run(emu, sweep(tmp_path, 30, 30), api_key)
    check_wide_run(emu, result, events, 30)


@pytest.mark.soak
def test_200_tasks_under_10_percent_faults_and_5_percent_failures(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator(error_rate=0.1, fail_rate=0.05, seed=11, task_seconds=(0.1, 0.3))
    result, events = run(emu, sweep(tmp_path, 200, 20), api_key)
    check_faulty_sweep(emu, result, events)
    assert 0 < Counter(t.status for t in result.manifest.tasks)["failed"] < 30


@pytest.mark.soak
def test_concurrency_100_against_a_platform_that_runs_10(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator(concurrency=10, seed=5, task_seconds=(0.2, 0.4))
    result, events = run(emu, sweep(tmp_path, 200, 100), api_key)
    check_wide_run(emu, result, events, 100)

"""The executor when things go wrong midway: outages, forgotten tasks, local faults, resumes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from test_executor import FAST, faults, run, sweep_yaml, write

from rhflow.emulator import Emulator


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative ``output`` folders resolve against the working directory."""
    monkeypatch.chdir(tmp_path)


def test_an_outage_while_following_leaves_the_task_for_the_next_run_to_pick_up(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator()
    faults(emu, **{"http_500:/task/openapi/outputs": 2})
    path = write(tmp_path, sweep_yaml(1))
    first = run(emu, path, api_key, execute_options={**FAST, "api_retries": 1})
    (task,) = first.manifest.tasks
    assert first.manifest.status == "failed" and task.status == "failed"
    assert task.failure and task.failure.startswith(
        f"checking task {task.task_id} failed (run again to pick it up): RunningHub answered 500"
    )
    again = run(emu, path, api_key)
    (resumed,) = again.manifest.tasks
    assert again.manifest.status == "succeeded" and resumed.failure is None
    assert resumed.task_id == task.task_id and resumed.attempts == 1
    assert emu.stats()["tasks"]["created"] == 1  # picked up, not paid for twice

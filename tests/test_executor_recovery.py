"""The executor when things go wrong midway: outages, forgotten tasks, local faults, resumes."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_executor import FAST, QUICK_POLL, T2I, faults, run, sweep_yaml, write

from rhflow.api.client import Client, TaskOutputs
from rhflow.emulator import Emulator
from rhflow.execute.runner import plan_graph, run_pipeline
from rhflow.record.store import Store, TaskRecord


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


class ForgetfulClient(Client):
    """Asks the server about ids it never issued for the first ``forget`` tasks, as if it had
    forgotten them (the server answers 807)."""

    def __init__(self, *args: Any, forget: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.forget = forget
        self.forgotten: set[str] = set()

    def outputs(self, task_id: str | int) -> TaskOutputs:
        if str(task_id) in self.forgotten or len(self.forgotten) < self.forget:
            self.forgotten.add(str(task_id))
            return super().outputs("1" * 19)
        return super().outputs(task_id)


def test_a_task_the_server_keeps_forgetting_is_created_only_as_often_as_retries_allow(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator()
    path = write(tmp_path, sweep_yaml(1, retries=1))
    with ForgetfulClient(api_key, emu.url, forget=3) as client:
        result = run_pipeline(path, client=client, poll=QUICK_POLL, execute_options=FAST)
    (task,) = result.manifest.tasks
    assert result.manifest.status == "failed" and task.status == "failed"
    assert task.attempts == 2 and task.failure_detail
    assert task.failure_detail["kind"] == "lost"
    assert task.failure == f"the server no longer knows task {task.task_id}"
    assert emu.stats()["tasks"]["created"] == 2


def test_a_task_picked_up_from_an_earlier_run_has_used_one_attempt(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator()
    faults(emu, fail_tasks=1)
    path = write(tmp_path, sweep_yaml(1, retries=0))
    (task,) = plan_graph(path).tasks
    # what a run that was stopped with --detach leaves: a remote task recorded as running
    with Client(api_key, emu.url) as client:
        created = client.create_task(T2I, [dict(e) for e in task.node_info_list])
    with Store.for_output(tmp_path / "out") as store:
        store.save(
            TaskRecord(
                task.id,
                task.step,
                "running",
                remote_id=created.task_id,
                server=emu.url,
                attempts=1,
                params=dict(task.params),
                submitted_at=time.time(),
            )
        )
    result = run(emu, path, api_key)
    (resumed,) = result.manifest.tasks
    assert result.manifest.status == "failed" and resumed.status == "failed"
    assert resumed.task_id == created.task_id and resumed.attempts == 1
    assert resumed.failure and "OutOfMemoryError" in resumed.failure
    assert emu.stats()["tasks"]["created"] == 1  # retries: 0, and its one attempt was used


def test_a_local_write_error_is_a_download_failure_fetched_again_by_the_next_run(
    make_emulator: Callable[..., Emulator],
    api_key: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    emu = make_emulator()
    text = sweep_yaml(1).replace('outputs: "cat-', 'outputs: "blocked/cat-')
    path = write(tmp_path, text)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "blocked").write_text("a file where the outputs need a folder")
    first = run(emu, path, api_key)
    (task,) = first.manifest.tasks
    assert task.status == "failed" and task.failure_detail
    assert task.failure_detail["kind"] == "download"
    dest = tmp_path / "out" / "blocked" / "cat-1-0.png"
    assert task.failure and task.failure.startswith(f"writing output 0 to {dest} failed: ")
    assert task.failure.endswith(
        "; fix that and run again to download it (the task is not run again)"
    )
    assert not [r for r in caplog.records if r.exc_info]  # no traceback for a local fault
    (tmp_path / "out" / "blocked").unlink()
    again = run(emu, path, api_key)
    (done,) = again.manifest.tasks
    assert again.manifest.status == "succeeded" and done.task_id == task.task_id
    assert dest.read_bytes()[:4] == b"\x89PNG"
    assert emu.stats()["tasks"]["created"] == 1  # downloaded, not run again


def test_resuming_a_download_fetches_only_the_files_not_already_intact_on_disk(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator()
    text = """
version: 1
name: two
output: out
steps:
  two:
    workflow: "1904136902449209348"
    nodes: {"5": {width: 64, height: 64}}
    outputs: "two-{{ index }}.{{ ext }}"
"""
    path = write(tmp_path, text)
    first = run(emu, path, api_key)
    (task,) = first.manifest.tasks
    assert first.manifest.status == "succeeded" and len(task.outputs) == 2
    kept, lost = (tmp_path / "out" / str(o.path) for o in task.outputs)
    before = kept.stat()
    lost.unlink()
    again = run(emu, path, api_key)
    (resumed,) = again.manifest.tasks
    assert again.manifest.status == "succeeded"
    assert [o.sha256 for o in resumed.outputs] == [o.sha256 for o in task.outputs]
    assert kept.stat().st_ino == before.st_ino and kept.stat().st_mtime_ns == before.st_mtime_ns
    assert lost.is_file()
    assert emu.stats()["requests"]["/files/{task_id}/{name}"] == 3  # 2, then only the lost one
    assert emu.stats()["tasks"]["created"] == 1

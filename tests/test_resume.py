"""Resume: skip what is done, re-attach to what runs, never submit twice, even after kill -9."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import jsonschema
import pytest
import requests

from rhflow.api.client import Client, origin_of
from rhflow.emulator import Emulator
from rhflow.execute.folder import FolderError
from rhflow.execute.runner import RunResult, run_pipeline
from rhflow.execute.scheduling import Backoff, PollPolicy
from rhflow.record.store import Store

T2I = "1904136902449209346"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def pipeline(tmp_path: Path, seeds: int, concurrency: int) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(f"""
version: 1
name: resume
output: out
concurrency: {concurrency}
steps:
  gen:
    workflow: "{T2I}"
    retries: 0
    matrix: {{seed: {{range: [1, {seeds + 1}]}}}}
    nodes:
      "3": {{seed: "{{{{ seed }}}}"}}
      "5": {{width: 64, height: 64}}
    outputs: "img-{{{{ seed }}}}.{{{{ ext }}}}"
""")
    return path


def run(emu: Emulator, path: Path, key: str, **kw: Any) -> RunResult:
    kw.setdefault("poll", PollPolicy(first=0.1, cap=0.4))
    kw.setdefault("execute_options", {"retry_backoff": Backoff(0.02, cap=0.1)})
    with Client(key, emu.url) as client:
        return run_pipeline(path, client=client, **kw)


def start(emu: Emulator, path: Path, key: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "RH_API_KEY": key, "PYTHONPATH": str(REPO)}
    env.pop("RH_BASE_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "rhflow", "run", str(path), "--base-url", emu.url, "--json", *args],
        cwd=path.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def events(stream: IO[str]) -> Iterator[dict[str, Any]]:
    for line in stream:
        yield json.loads(line)


def wait_for(proc: subprocess.Popen[str], name: str, count: int) -> list[dict[str, Any]]:
    """Read JSON events until the ``count``-th ``name`` event."""
    seen: list[dict[str, Any]] = []
    assert proc.stdout is not None
    for event in events(proc.stdout):
        seen.append(event)
        if sum(e["event"] == name for e in seen) == count:
            return seen
    raise AssertionError(f"the run ended before {count} {name} events: {proc.stderr}")


def detach_after_submitting(
    emu: Emulator, path: Path, key: str, count: int
) -> list[dict[str, Any]]:
    """Run ``rhflow run --detach`` in a process, Ctrl-C it once ``count`` tasks are submitted,
    and return their task_submitted events (the remote tasks are left running)."""
    with start(emu, path, key, "--detach") as proc:
        seen = wait_for(proc, "task_submitted", count)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    return [e for e in seen if e["event"] == "task_submitted"]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_second_run_skips_finished_tasks(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator()
    path = pipeline(tmp_path, seeds=3, concurrency=3)
    assert run(emu, path, api_key).manifest.status == "succeeded"
    again = run(emu, path, api_key)
    assert again.manifest.status == "succeeded" and again.manifest.counts["succeeded"] == 3
    assert emu.stats()["tasks"]["created"] == 3


def test_missing_or_changed_files_are_downloaded_again_not_rerun(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator()
    path = pipeline(tmp_path, seeds=2, concurrency=2)
    first = run(emu, path, api_key).manifest
    (tmp_path / "out" / "img-1.png").unlink()
    (tmp_path / "out" / "img-2.png").write_bytes(b"\x89PNG\r\n\x1a\n tampered")
    again = run(emu, path, api_key).manifest
    assert again.status == "succeeded"
    assert emu.stats()["tasks"]["created"] == 2
    for before, after in zip(first.tasks, again.tasks, strict=True):
        assert after.outputs[0].sha256 == before.outputs[0].sha256
        assert sha(tmp_path / "out" / str(after.outputs[0].path)) == after.outputs[0].sha256
        assert after.notes == (
            "files missing or changed since the last run; downloading them again",
        )


def test_outputs_whose_links_died_are_made_again_with_a_note(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    first = make_emulator()
    path = pipeline(tmp_path, seeds=2, concurrency=2)
    assert run(first, path, api_key).manifest.status == "succeeded"
    first.stop()  # its task ids and file links are gone
    (tmp_path / "out" / "img-1.png").unlink()
    second = make_emulator()  # another port: another server, whose results would not count
    with pytest.raises(FolderError, match="--force"):
        run(second, path, api_key)
    assert second.stats()["tasks"]["created"] == 0
    with Store.for_output(tmp_path / "out") as store:  # as if the same server had restarted
        for record in store.tasks().values():
            store.update(record.id, server=origin_of(second.url))
    manifest = run(second, path, api_key).manifest
    assert manifest.status == "succeeded"
    assert second.stats()["tasks"]["created"] == 1
    remade = next(t for t in manifest.tasks if t.params["seed"] == 1)
    assert remade.notes == (
        "files missing or changed since the last run; downloading them again",
        "the earlier outputs can no longer be downloaded; running the task again",
    )
    assert sha(tmp_path / "out" / "img-1.png") == remade.outputs[0].sha256


def test_failed_tasks_are_retried_on_the_next_run_and_force_reruns_all(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator(concurrency=1)
    requests.post(f"{emu.url}/emulator/faults", json={"fail_tasks": 1}, timeout=5)
    path = pipeline(tmp_path, seeds=2, concurrency=1)
    assert run(emu, path, api_key).manifest.counts["failed"] == 1
    again = run(emu, path, api_key).manifest
    assert again.status == "succeeded"
    assert emu.stats()["tasks"]["created"] == 3
    assert sorted(t.attempts for t in again.tasks) == [1, 2]
    forced = run(emu, path, api_key, force=True).manifest
    assert forced.status == "succeeded" and emu.stats()["tasks"]["created"] == 5


def test_kill_9_mid_run_then_resume_submits_nothing_twice(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator(task_seconds=(0.4, 0.4))
    path = pipeline(tmp_path, seeds=5, concurrency=1)
    with start(emu, path, api_key) as proc:
        # One task in flight at a time: after the 3rd submission the run is following task 3,
        # with no create request in the air.
        seen = wait_for(proc, "task_submitted", 3)
        proc.kill()
        proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert sum(e["event"] == "task_succeeded" for e in seen) == 2
    # what a kill during a download or a manifest write would leave
    (tmp_path / "out" / ".rhflow" / "partial").mkdir(exist_ok=True)
    (tmp_path / "out" / ".rhflow" / "partial" / ".x.png.1234.part").write_bytes(b"half")
    (tmp_path / "out" / ".manifest.json.abcd.part").write_text("{")
    result = run(emu, path, api_key)
    manifest = result.manifest
    assert manifest.status == "succeeded" and manifest.counts["succeeded"] == 5
    assert not (tmp_path / "out" / ".manifest.json.abcd.part").exists()
    assert list((tmp_path / "out" / ".rhflow" / "partial").iterdir()) == []
    stats = emu.stats()["tasks"]
    assert stats["created"] == 5 and stats["duplicates"] == 0
    third = [e for e in seen if e["event"] == "task_submitted"][2]
    resumed = next(t for t in manifest.tasks if t.id == third["task"])
    assert resumed.task_id == third["task_id"]  # re-attached, not submitted again
    for task in manifest.tasks:
        (output,) = task.outputs
        assert sha(tmp_path / "out" / str(output.path)) == output.sha256


def test_ctrl_c_cancels_remote_tasks_writes_the_manifest_and_exits_130(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator(task_seconds=(5.0, 5.0))
    path = pipeline(tmp_path, seeds=4, concurrency=2)
    with start(emu, path, api_key) as proc:
        seen = wait_for(proc, "task_submitted", 2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    submitted = [e for e in seen if e["event"] == "task_submitted"]
    assert proc.returncode == 130, err
    assert json.loads(out.splitlines()[-1])["status"] == "interrupted"
    stats = emu.stats()["tasks"]
    assert stats["cancelled"] == 2 and stats["created"] == 2
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    jsonschema.validate(
        manifest, json.loads((REPO / "schemas" / "manifest.schema.json").read_text())
    )
    assert manifest["status"] == "interrupted"
    by_remote = {t["task_id"]: t for t in manifest["tasks"] if t["task_id"]}
    assert sorted(by_remote) == sorted(e["task_id"] for e in submitted)
    assert all(t["status"] == "cancelled" for t in by_remote.values())
    assert sorted(t["status"] for t in manifest["tasks"]).count("pending") == 2


def test_detach_leaves_tasks_running_and_the_next_run_picks_them_up(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator(task_seconds=(1.0, 1.0))
    path = pipeline(tmp_path, seeds=2, concurrency=2)
    with start(emu, path, api_key, "--detach") as proc:
        wait_for(proc, "task_submitted", 2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert emu.stats()["tasks"]["cancelled"] == 0
    result = run(emu, path, api_key)
    assert result.manifest.status == "succeeded"
    assert emu.stats()["tasks"]["created"] == 2
    assert all("left running remotely (--detach)" in t.notes[0] for t in result.manifest.tasks)


def test_cancel_stops_what_a_detached_run_left_running(
    make_emulator: Callable[..., Emulator],
    api_key: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rhflow.cli import main

    emu = make_emulator(task_seconds=(5.0, 5.0))
    path = pipeline(tmp_path, seeds=2, concurrency=2)
    submitted = detach_after_submitting(emu, path, api_key, 2)
    assert main(["status", "out", "--json"]) == 3  # tasks still running remotely: unfinished
    summary = json.loads(capsys.readouterr().out)
    assert summary["run_status"] == "interrupted" and summary["counts"]["running"] == 2
    assert sorted(t["task_id"] for t in summary["running"]) == sorted(
        e["task_id"] for e in submitted
    )
    monkeypatch.setenv("RH_API_KEY", api_key)
    assert main(["cancel", "out"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sorted(lines[:2]) == sorted(
        f"cancelled task {e['task_id']} (gen/{e['task'][:10]})" for e in submitted
    )
    assert lines[2] == "cancelled 2 task(s)"
    assert emu.stats()["tasks"]["cancelled"] == 2
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [t["status"] for t in manifest["tasks"]] == ["cancelled", "cancelled"]


def _planned() -> Any:
    from rhflow.model import PlannedTask, Target

    return PlannedTask("t1", "gen", {"seed": 1}, Target("workflow", T2I), ())


def _stored(tmp_path: Path, status: str, **changes: Any) -> Any:
    from rhflow.record.store import OutputRecord, TaskRecord

    image = tmp_path / "a.png"
    image.write_bytes(b"png")
    output = OutputRecord(0, "9", "http://x/a.png", "png", str(image), sha(image), 3)
    return TaskRecord("t1", "gen", status, remote_id="19", outputs=(output,), **changes)


@pytest.mark.parametrize(
    ("status", "damage", "mode"),
    [
        ("succeeded", False, "done"),
        ("succeeded", True, "collect"),
        ("downloading", False, "collect"),
        ("running", False, "follow"),
        ("queued", False, "follow"),
        ("submitted", False, "follow"),
        ("failed", False, "fresh"),
        ("cancelled", False, "fresh"),
        ("pending", False, "fresh"),
    ],
)
def test_the_resume_decision_for_each_stored_status(
    tmp_path: Path, status: str, damage: bool, mode: str
) -> None:
    from rhflow.execute.resume import decide

    record = _stored(tmp_path, status)
    if damage:
        (tmp_path / "a.png").write_bytes(b"changed")
    decision = decide(_planned(), record, force=False)
    assert decision.mode == mode
    if mode == "fresh":
        assert decision.record.status == "pending" and decision.record.remote_id == "19"
    forced = decide(_planned(), record, force=True)
    assert forced.mode == "fresh"
    assert forced.supersedes == ("19" if mode == "follow" else None)
    assert decide(_planned(), None, force=False).record.status == "pending"


def test_a_downstream_task_resumes_when_its_upstream_is_already_done(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator()
    path = tmp_path / "chain.yaml"
    path.write_text(f"""
version: 1
name: chain
output: out
steps:
  draft:
    workflow: "{T2I}"
    nodes: {{"5": {{width: 64, height: 64}}}}
    outputs: "draft.{{{{ ext }}}}"
  refine:
    needs: draft
    workflow: "1904136902449209347"
    nodes: {{"2": {{image: "{{{{ needs.draft.outputs[0] }}}}"}}}}
    outputs: "refine.{{{{ ext }}}}"
""")
    assert run(emu, path, api_key).manifest.status == "succeeded"
    (tmp_path / "out" / "refine.png").unlink()
    again = run(emu, path, api_key).manifest
    assert again.status == "succeeded"
    assert (tmp_path / "out" / "refine.png").is_file()
    assert emu.stats()["tasks"]["created"] == 2
    third = run(emu, path, api_key).manifest
    assert third.counts["succeeded"] == 2 and emu.stats()["tasks"]["created"] == 2


def test_cancel_refuses_while_the_run_is_still_going_and_says_how_to_stop_it(
    make_emulator: Callable[..., Emulator],
    api_key: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rhflow.cli import main

    emu = make_emulator(task_seconds=(5.0, 5.0))
    path = pipeline(tmp_path, seeds=2, concurrency=2)
    with start(emu, path, api_key) as proc:
        wait_for(proc, "task_submitted", 2)
        monkeypatch.setenv("RH_API_KEY", api_key)
        code = main(["cancel", "out"])
        err = capsys.readouterr().err
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert code == 1
    assert err.startswith(f"Error: another rhflow run (pid {proc.pid}) is using ")
    assert "press Ctrl-C in it or send it SIGTERM" in err
    assert proc.returncode == 130
    stats = emu.stats()["tasks"]
    assert stats["created"] == 2 and stats["cancelled"] == 2  # by the run's own SIGTERM handling


def test_force_cancels_what_an_earlier_run_left_running_instead_of_paying_twice(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator(task_seconds=(5.0, 5.0))
    path = pipeline(tmp_path, seeds=2, concurrency=2)
    left = sorted(e["task_id"] for e in detach_after_submitting(emu, path, api_key, 2))
    result = run(emu, path, api_key, force=True)  # the same server: its 5 s tasks still run
    assert result.manifest.status == "succeeded"
    stats = emu.stats()["tasks"]
    assert stats["created"] == 4 and stats["cancelled"] == 2
    notes = sorted(note for task in result.manifest.tasks for note in task.notes)
    assert notes == sorted(
        f"--force: remote task {rid} of an earlier run cancelled" for rid in left
    )


@pytest.mark.parametrize("flags", [(), ("--detach",)])
def test_ctrl_c_while_waiting_to_retry_keeps_the_failure_and_cancels_nothing(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    emu = make_emulator()
    requests.post(f"{emu.url}/emulator/faults", json={"fail_tasks": 1}, timeout=5)
    path = pipeline(tmp_path, seeds=1, concurrency=1)
    path.write_text(path.read_text().replace("retries: 0", "retries: 1"))
    with start(emu, path, api_key, *flags) as proc:
        seen = wait_for(proc, "task_retry", 1)  # the retry waits 2 s before submitting again
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    (failed,) = [e["task_id"] for e in seen if e["event"] == "task_submitted"]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    (task,) = manifest["tasks"]
    assert task["status"] == "pending" and task["task_id"] == failed
    assert "raised torch.OutOfMemoryError" in task["failure"] and task["notes"] == []
    assert emu.stats()["requests"].get("/task/openapi/cancel", 0) == 0
    again = run(emu, path, api_key).manifest
    assert again.status == "succeeded" and again.tasks[0].attempts == 2
    assert emu.stats()["tasks"]["created"] == 2  # submitted anew, not re-attached to the failure

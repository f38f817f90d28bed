"""Pay once: where a task may have been created twice, the manifest and ``rhflow status`` say so.

RunningHub's create takes no idempotency key and its API lists no tasks, so a create whose
answer is lost (a dropped connection, a process killed before the answer is recorded) may have
made a task nobody can find again. These tests lose answers on purpose through a loopback proxy
(``dropping_proxy``) and check that every such task, and only those, is flagged. A Ctrl-C that
comes after a task finished remotely keeps it: its files are downloaded by the next run.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from dropping_proxy import DroppingProxy

from rhflow.api.client import Client
from rhflow.emulator import Emulator
from rhflow.execute.runner import RunResult, run_pipeline
from rhflow.execute.scheduling import Backoff, PollPolicy
from rhflow.progress import format_summary

T2I = "1904136902449209346"
REPO = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((REPO / "schemas" / "manifest.schema.json").read_text())


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def write_pipeline(folder: Path, tasks: int, concurrency: int = 1) -> Path:
    path = folder / "p.yaml"
    path.write_text(f"""
version: 1
name: once
output: out
concurrency: {concurrency}
steps:
  gen:
    workflow: "{T2I}"
    retries: 0
    matrix: {{seed: {{range: [1, {tasks + 1}]}}}}
    nodes:
      "3": {{seed: "{{{{ seed }}}}"}}
      "5": {{width: 64, height: 64}}
    outputs: "img-{{{{ seed }}}}.{{{{ ext }}}}"
""")
    return path


def run(url: str, path: Path, key: str, **kw: Any) -> RunResult:
    kw.setdefault("poll", PollPolicy(first=0.1, cap=0.4))
    kw.setdefault("execute_options", {"api_backoff": Backoff(0.01, cap=0.05)})
    with Client(key, url) as client:
        return run_pipeline(path, client=client, **kw)


def seed_of(body: dict[str, Any]) -> int:
    return next(int(e["fieldValue"]) for e in body["nodeInfoList"] if str(e["nodeId"]) == "3")


def manifest_of(folder: Path) -> dict[str, Any]:
    data = json.loads((folder / "out" / "manifest.json").read_text())
    jsonschema.validate(data, SCHEMA)
    return data


def test_lost_create_answers_are_flagged_twice_in_the_manifest_status_and_summary(
    make_emulator: Callable[..., Emulator],
    api_key: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from rhflow.cli import main

    emu = make_emulator()
    path = write_pipeline(tmp_path, 8)
    with DroppingProxy(emu.url, drop={2, 5, 7}) as proxy:
        result = run(proxy.url, path, api_key)
    assert result.manifest.status == "succeeded"
    stats = emu.stats()["tasks"]
    assert stats["created"] == 11 and stats["duplicates"] == 3  # paid twice: no way around it
    data = manifest_of(tmp_path)
    flagged = {t["params"]["seed"]: t for t in data["tasks"] if t["maybe_twice"]}
    assert sorted(flagged) == sorted(seed_of(b) for b in proxy.dropped)
    assert data["maybe_twice"] == 3
    known = {t["task_id"] for t in data["tasks"]}
    orphans = [r for r in emu.stats()["task_records"] if r["taskId"] not in known]
    assert len(orphans) == 3  # made by the lost creates; no rhflow record can name them
    for task in flagged.values():
        twice = task["maybe_twice"]
        assert twice["task_ids"] == [task["task_id"]] and twice["unanswered"] == 1
        assert "may have been created twice" in twice["reason"]
        assert any("twice" in note for note in task["notes"])
    summary = format_summary(result.manifest, "out/manifest.json")
    assert summary.splitlines()[0].endswith("; 3 tasks may have been created twice")
    assert main(["status", "out"]) == 0
    shown = capsys.readouterr().out
    assert "3 task(s) may have been created twice" in shown
    for task in flagged.values():
        assert f"gen/{task['id'][:10]}: may have been created twice" in shown
        assert task["task_id"] in shown


def test_a_create_answered_with_something_unreadable_is_flagged_too(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    """A 200 whose body is not RunningHub's JSON came after the server took the create: the
    task may exist, so the create sent again is flagged, as for a lost answer."""
    emu = make_emulator()
    path = write_pipeline(tmp_path, 3)
    with DroppingProxy(emu.url, garble={2}) as proxy:
        result = run(proxy.url, path, api_key)
    assert result.manifest.status == "succeeded"
    assert emu.stats()["tasks"]["duplicates"] == 1
    data = manifest_of(tmp_path)
    flagged = [t for t in data["tasks"] if t["maybe_twice"]]
    assert [t["params"]["seed"] for t in flagged] == [seed_of(b) for b in proxy.dropped]
    assert data["maybe_twice"] == 1


def test_a_run_without_lost_answers_flags_nothing(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator()
    path = write_pipeline(tmp_path, 2)
    result = run(emu.url, path, api_key)
    assert result.manifest.status == "succeeded"
    assert not result.manifest.maybe_twice
    assert emu.stats()["tasks"]["duplicates"] == 0


def test_a_run_killed_while_a_create_answer_is_in_the_air_flags_the_task_next_time(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator()
    path = write_pipeline(tmp_path, 5)
    env = {**os.environ, "RH_API_KEY": api_key, "PYTHONPATH": str(REPO)}
    with DroppingProxy(emu.url, hold={3}) as proxy:
        cmd = [sys.executable, "-m", "rhflow", "run", str(path), "--base-url", proxy.url]
        with subprocess.Popen(
            cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as proc:
            assert proxy.holding.wait(30), "the third create never came"
            proc.kill()
            proc.communicate(timeout=10)
        proxy.release()
        result = run(proxy.url, path, api_key)
    assert result.manifest.status == "succeeded"
    stats = emu.stats()["tasks"]
    assert stats["created"] == 6 and stats["duplicates"] == 1
    data = manifest_of(tmp_path)
    flagged = [t for t in data["tasks"] if t["maybe_twice"]]
    assert [t["params"]["seed"] for t in flagged] == [3]
    (task,) = flagged
    assert task["maybe_twice"]["task_ids"] == [task["task_id"]]
    assert "killed before its answer was recorded" in " ".join(task["notes"])


def test_ctrl_c_after_tasks_finished_remotely_keeps_them_for_the_next_run(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator(task_seconds=(0.2, 0.2))
    path = write_pipeline(tmp_path, 3, concurrency=3)
    script = (
        "import sys\n"
        "from rhflow.execute.runner import run_pipeline\n"
        "from rhflow.execute.scheduling import PollPolicy\n"
        "from rhflow.progress import make_reporter\n"
        "run_pipeline(sys.argv[1], base_url=sys.argv[2], websocket=False,\n"
        "             poll=PollPolicy(first=60.0, cap=60.0, jitter=0.0),\n"
        "             reporter=make_reporter(as_json=True))\n"
    )
    env = {**os.environ, "RH_API_KEY": api_key, "PYTHONPATH": str(REPO)}
    with subprocess.Popen(
        [sys.executable, "-c", script, str(path), emu.url],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        submitted = 0
        for line in proc.stdout:
            submitted += json.loads(line)["event"] == "task_submitted"
            if submitted == 3:
                break
        deadline = time.monotonic() + 20
        while emu.stats()["tasks"]["succeeded"] < 3 and time.monotonic() < deadline:
            time.sleep(0.05)  # the tasks finish remotely while the run waits to poll
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    data = manifest_of(tmp_path)
    assert data["status"] == "interrupted"
    for task in data["tasks"]:
        assert task["failure"].startswith(
            f"interrupted after remote task {task['task_id']} had finished; the next run "
            "downloads its files"
        )
    result = run(emu.url, path, api_key)
    assert result.manifest.status == "succeeded"
    stats = emu.stats()["tasks"]
    assert stats["created"] == 3 and stats["duplicates"] == 0  # kept, not paid again
    for task in result.manifest.tasks:
        (output,) = task.outputs
        digest = hashlib.sha256((tmp_path / "out" / str(output.path)).read_bytes()).hexdigest()
        assert digest == output.sha256

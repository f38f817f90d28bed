"""A pool of API keys: each key has its own slots, a refused key is taken out while the others
go on, and the manifest names the key that ran each task by a fingerprint, never the key."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rhflow.api.client import key_fingerprint, split_keys
from rhflow.cli import main
from rhflow.emulator import Emulator

REPO = Path(__file__).resolve().parent.parent
T2I = "1904136902449209346"
KEY_A = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1"
KEY_B = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb2"
BAD = "ccccccccccccccccccccccccccccccc3"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def pipeline(tmp_path: Path, tasks: int = 4) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(f"""
version: 1
name: pooled
output: out
concurrency: 2
steps:
  gen:
    workflow: "{T2I}"
    retries: 0
    matrix:
      seed: {{range: [1, {tasks + 1}]}}
    nodes:
      "3": {{seed: "{{{{ seed }}}}"}}
    outputs: "gen-{{{{ seed }}}}.{{{{ ext }}}}"
""")
    return path


def manifest(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "out" / "manifest.json").read_text())


def secrets_absent(tmp_path: Path, *keys: str) -> None:
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for key in keys:
                assert key.encode() not in data, f"{path} holds an API key"
                assert key[:8].encode() not in data, f"{path} holds a prefix of an API key"


def test_two_keys_of_concurrency_two_run_four_tasks_at_once(
    tmp_path: Path,
    make_emulator: Callable[..., Emulator],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emu = make_emulator(api_keys=(KEY_A, KEY_B), concurrency=2, task_seconds=(1.0, 1.0))
    monkeypatch.setenv("RH_API_KEY", f"{KEY_A}, {KEY_B}")
    assert main(["run", str(pipeline(tmp_path)), "--base-url", emu.url, "-q"]) == 0
    stats = emu.stats()
    assert stats["peak_running"] == 4  # two per key, both keys at once
    assert stats["requests"]["/task/openapi/create"] == 4  # no busy answer: no resubmit
    tasks = manifest(tmp_path)["tasks"]
    used = sorted(t["key"] for t in tasks)
    assert used == sorted([key_fingerprint(KEY_A)] * 2 + [key_fingerprint(KEY_B)] * 2)
    assert all(t["status"] == "succeeded" for t in tasks)
    secrets_absent(tmp_path, KEY_A, KEY_B)
    out, err = capsys.readouterr()
    assert KEY_A not in out + err and KEY_B not in out + err


def test_one_key_keeps_its_concurrency(
    tmp_path: Path, make_emulator: Callable[..., Emulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = make_emulator(api_keys=(KEY_A,), concurrency=2, task_seconds=(0.5, 0.5))
    assert main(["run", str(pipeline(tmp_path)), "--base-url", emu.url, "--api-key", KEY_A]) == 0
    assert emu.stats()["peak_running"] == 2
    assert {t["key"] for t in manifest(tmp_path)["tasks"]} == {key_fingerprint(KEY_A)}


def test_a_refused_key_is_taken_out_and_the_run_goes_on(
    tmp_path: Path,
    make_emulator: Callable[..., Emulator],
    capsys: pytest.CaptureFixture[str],
) -> None:
    emu = make_emulator(api_keys=(KEY_A,), concurrency=2)
    args = ["run", str(pipeline(tmp_path)), "--base-url", emu.url]
    assert main([*args, "--api-key", BAD, "--api-key", KEY_A]) == 0
    err = capsys.readouterr().err
    assert f"warning: API key {key_fingerprint(BAD)} taken out of the pool (" in err
    assert "the other keys go on" in err and BAD not in err
    data = manifest(tmp_path)
    assert data["status"] == "succeeded"
    assert {t["key"] for t in data["tasks"]} == {key_fingerprint(KEY_A)}
    secrets_absent(tmp_path, BAD, KEY_A)


def test_every_key_refused_sends_nothing(
    tmp_path: Path, make_emulator: Callable[..., Emulator], capsys: pytest.CaptureFixture[str]
) -> None:
    emu = make_emulator(api_keys=(KEY_A,))
    code = main(
        ["run", str(pipeline(tmp_path)), "--base-url", emu.url, "--api-key", f"{BAD},{BAD[::-1]}"]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(f"Error: {key_fingerprint(BAD)}: ")
    assert err.rstrip().endswith("nothing was submitted")
    assert emu.stats()["requests"].get("/task/openapi/create", 0) == 0


def test_fingerprints_are_not_prefixes_and_keys_split_on_commas() -> None:
    assert split_keys(" a, b,,a ") == ["a", "b"]
    assert split_keys(("a,b", "c")) == ["a", "b", "c"]
    fingerprint = key_fingerprint(KEY_A)
    assert fingerprint.startswith("key-") and len(fingerprint) == 16
    assert KEY_A[:4] not in fingerprint[4:] and fingerprint != key_fingerprint(KEY_B)


def detach_after(emu: Emulator, path: Path, keys: str, count: int) -> list[dict[str, Any]]:
    """``rhflow run --detach --json`` in a process with the key pool ``keys``, Ctrl-C'd once
    ``count`` tasks are submitted; their task_submitted events (the tasks are left running)."""
    env = {**os.environ, "RH_API_KEY": keys, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-m", "rhflow", "run", str(path), "--base-url", emu.url]
    with subprocess.Popen(
        [*args, "--json", "--detach"],
        cwd=path.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:
            event = json.loads(line)
            if event["event"] == "task_submitted":
                seen.append(event)
                if len(seen) == count:
                    break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    return seen


def test_reattach_and_cancel_use_the_key_that_created_each_task(
    tmp_path: Path,
    make_emulator: Callable[..., Emulator],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # the emulator, as RunningHub, knows a task only under the key that created it
    emu = make_emulator(api_keys=(KEY_A, KEY_B), concurrency=2, task_seconds=(2.0, 2.0))
    path = pipeline(tmp_path)
    detach_after(emu, path, f"{KEY_A},{KEY_B}", 4)
    monkeypatch.setenv("RH_API_KEY", f"{KEY_B},{KEY_A}")  # another order: matched by key
    assert main(["run", str(path), "--base-url", emu.url, "-q"]) == 0
    stats = emu.stats()
    assert stats["tasks"]["created"] == 4  # every task followed with its own key, none redone
    tasks = manifest(tmp_path)["tasks"]
    assert sorted(t["key"] for t in tasks) == sorted(
        [key_fingerprint(KEY_A)] * 2 + [key_fingerprint(KEY_B)] * 2
    )

    other = tmp_path / "second"
    other.mkdir()
    second = pipeline(other)
    submitted = detach_after(emu, second, f"{KEY_A},{KEY_B}", 4)
    capsys.readouterr()
    monkeypatch.chdir(other)
    monkeypatch.setenv("RH_API_KEY", KEY_A)  # only one of the two keys
    assert main(["cancel", "out", "--base-url", emu.url]) == 1
    out = capsys.readouterr().out
    assert f"created with API key {key_fingerprint(KEY_B)}, which is not among the keys" in out
    assert "cancelled 2 task(s)" in out
    monkeypatch.setenv("RH_API_KEY", f"{KEY_B},{KEY_A}")
    assert main(["cancel", "out", "--base-url", emu.url]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "cancelled 2 task(s)"
    assert emu.stats()["tasks"]["cancelled"] == 4 and len(submitted) == 4


def test_a_task_left_running_under_a_key_this_run_lacks_is_not_created_again(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    """The server cannot find a task asked for with another key (807); that does not mean
    the task is gone, so it is kept running for a run with its key, not paid for twice."""
    from tests.test_resume import detach_after_submitting
    from tests.test_resume import pipeline as resume_pipeline
    from tests.test_resume import run as resume_run

    first, other = "a" * 32, "b" * 32
    emu = make_emulator(task_seconds=(5.0, 5.0), api_keys=(first, other))
    path = resume_pipeline(tmp_path, seeds=2, concurrency=2)
    detach_after_submitting(emu, path, first, 2)
    result = resume_run(emu, path, other)
    assert emu.stats()["tasks"]["created"] == 2  # nothing created again
    for task in result.manifest.tasks:
        assert "run again with that key" in (task.failure or "")
    from rhflow.record.store import Store

    with Store.for_output(tmp_path / "out") as store:  # kept for the run that has the key
        assert {r.status for r in store.tasks().values()} == {"running"}
    assert resume_run(emu, path, first).manifest.status == "succeeded"
    assert emu.stats()["tasks"]["created"] == 2

"""Kill and interrupt trials: ``kill -9`` or Ctrl-C at random moments of a 30-task sweep, then
``rhflow run`` again to the end.

Per trial: the manifest left by the stopped run is valid, the second run succeeds, every output
is on disk with its sha256, and no task is paid for twice without a word:

- kill -9: every task the emulator made more than once is flagged ``maybe_twice`` in the
  manifest (the one window the API leaves open: a create whose answer the killed process never
  recorded);
- Ctrl-C: no task runs to the end remotely twice, and nothing is made that the state does not
  know (a task finished before its cancel is kept and downloaded, not created again).

The default suite runs a few trials; ``python -m pytest -m soak tests/test_kill_trials.py -s``
runs 24 kill and 12 Ctrl-C trials and prints the figures.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from rhflow.emulator import Emulator
from rhflow.record.store import Store

T2I = "1904136902449209346"
REPO = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((REPO / "schemas" / "manifest.schema.json").read_text())
TASKS = 30


def write_pipeline(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "p.yaml"
    path.write_text(f"""
version: 1
name: trials
output: out
concurrency: 6
steps:
  gen:
    workflow: "{T2I}"
    retries: 0
    matrix: {{seed: {{range: [1, {TASKS + 1}]}}}}
    nodes:
      "3": {{seed: "{{{{ seed }}}}"}}
      "5": {{width: 64, height: 64}}
    outputs: "img-{{{{ seed }}}}.{{{{ ext }}}}"
""")
    return path


def command(path: Path, emu: Emulator) -> list[str]:
    return [sys.executable, "-m", "rhflow", "run", str(path), "--base-url", emu.url, "-q"]


def environment(key: str) -> dict[str, str]:
    env = {**os.environ, "RH_API_KEY": key, "PYTHONPATH": str(REPO)}
    env.pop("RH_BASE_URL", None)
    return env


@dataclass
class Trial:
    created: int
    duplicates: int  # creates beyond one per task
    flagged: int  # tasks the manifest says may have been created twice
    lost_outputs: int  # outputs missing or changed after the second run
    paid_twice: int  # runs to the end beyond one per task, plus tasks the state never knew
    manifest_valid: bool


def stop_and_resume(emu: Emulator, key: str, folder: Path, sig: int, after: float) -> Trial:
    path = write_pipeline(folder)
    env = environment(key)
    with subprocess.Popen(
        command(path, emu),
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        time.sleep(after)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err, err
    valid = _valid(folder / "out" / "manifest.json")
    again = subprocess.run(
        command(path, emu), cwd=folder, env=env, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0, again.stderr
    manifest = json.loads((folder / "out" / "manifest.json").read_text())
    jsonschema.validate(manifest, SCHEMA)
    stats = emu.stats()
    return Trial(
        created=stats["tasks"]["created"],
        duplicates=stats["tasks"]["created"] - TASKS,
        flagged=sum(1 for t in manifest["tasks"] if t.get("maybe_twice")),
        lost_outputs=_lost(folder / "out", manifest),
        paid_twice=_paid_twice(folder / "out", stats["task_records"]),
        manifest_valid=valid,
    )


def _valid(path: Path) -> bool:
    if not path.exists():
        return True  # killed before the first write: nothing torn
    jsonschema.validate(json.loads(path.read_text()), SCHEMA)
    return True


def _lost(out: Path, manifest: dict[str, Any]) -> int:
    lost = 0
    for task in manifest["tasks"]:
        if task["status"] != "succeeded" or not task["outputs"]:
            lost += 1
        for output in task["outputs"]:
            file = out / output["path"]
            if (
                not file.is_file()
                or hashlib.sha256(file.read_bytes()).hexdigest() != output["sha256"]
            ):
                lost += 1
    return lost


def _paid_twice(out: Path, records: list[dict[str, Any]]) -> int:
    with Store.for_output(out) as store:
        known = store.remote_ids()
    ended: dict[str, int] = {}
    unknown = 0
    for record in records:
        task = known.get(record["taskId"])
        if task is None:
            unknown += 1
        elif record["status"] == "SUCCESS" and not record["cancelled"]:
            ended[task] = ended.get(task, 0) + 1
    return unknown + sum(n - 1 for n in ended.values() if n > 1)


def kill_trials(
    make_emulator: Callable[..., Emulator], key: str, root: Path, trials: int
) -> list[Trial]:
    rng = random.Random(9)
    found = []
    for number in range(trials):
        emu = make_emulator(task_seconds=(0.3, 0.8), seed=number)
        trial = stop_and_resume(
            emu, key, root / f"kill-{number}", signal.SIGKILL, rng.uniform(0.5, 4.0)
        )
        found.append(trial)
        assert trial.lost_outputs == 0 and trial.manifest_valid
        assert trial.created == TASKS + trial.duplicates
        assert trial.duplicates <= trial.flagged, (number, trial)  # never paid twice unsaid
        emu.stop()
    return found


def interrupt_trials(
    make_emulator: Callable[..., Emulator], key: str, root: Path, trials: int
) -> list[Trial]:
    rng = random.Random(15)
    found = []
    for number in range(trials):
        emu = make_emulator(task_seconds=(0.3, 0.8), seed=number)
        trial = stop_and_resume(
            emu, key, root / f"int-{number}", signal.SIGINT, rng.uniform(0.5, 4.0)
        )
        found.append(trial)
        assert trial.lost_outputs == 0 and trial.manifest_valid
        assert trial.paid_twice == 0, (number, trial)
        emu.stop()
    return found


def report(name: str, trials: list[Trial]) -> None:
    print(
        f"\n{name}: {len(trials)} trials, {sum(t.duplicates for t in trials)} tasks created "
        f"twice ({sum(t.flagged for t in trials)} flagged may-have-been-created-twice), "
        f"{sum(t.paid_twice for t in trials)} run to the end twice or unknown to the state, "
        f"{sum(t.lost_outputs for t in trials)} lost outputs, "
        f"{sum(not t.manifest_valid for t in trials)} invalid manifests"
    )


def test_kill_9_at_random_moments_a_few_trials(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    report("kill -9", kill_trials(make_emulator, api_key, tmp_path, 3))


def test_ctrl_c_at_random_moments_a_few_trials(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    report("Ctrl-C", interrupt_trials(make_emulator, api_key, tmp_path, 2))


@pytest.mark.soak
def test_kill_9_at_random_moments_24_trials(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    report("kill -9", kill_trials(make_emulator, api_key, tmp_path, 24))


@pytest.mark.soak
def test_ctrl_c_at_random_moments_12_trials(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    report("Ctrl-C", interrupt_trials(make_emulator, api_key, tmp_path, 12))

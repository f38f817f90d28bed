"""Damaged state is never paid for again without a word.

Each case damages the state of a finished 6-task run in its own way, then runs the pipeline
again as a user would (``python -m rhflow run``): no traceback, no task created again, and
either the state rebuilt from manifest.json (said on stderr) or a stop before any create with
the way out (exit 2).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rhflow.emulator import Emulator

T2I = "1904136902449209346"
REPO = Path(__file__).resolve().parent.parent
TASKS = 6


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def write_pipeline(folder: Path, output: str = "out") -> Path:
    path = folder / "p.yaml"
    path.write_text(f"""
version: 1
name: damage
output: {output}
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


def rhflow(emu: Emulator, key: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RH_API_KEY": key, "PYTHONPATH": str(REPO)}
    env.pop("RH_BASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "rhflow", *args, "--base-url", emu.url]
        if args[0] in ("run", "cancel")
        else [sys.executable, "-m", "rhflow", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def created(emu: Emulator) -> int:
    return int(emu.stats()["tasks"]["created"])


def intact(out: Path) -> bool:
    manifest = json.loads((out / "manifest.json").read_text())
    return (
        all(
            hashlib.sha256((out / o["path"]).read_bytes()).hexdigest() == o["sha256"]
            for t in manifest["tasks"]
            for o in t["outputs"]
        )
        and manifest["counts"]["succeeded"] == TASKS
    )


@pytest.fixture
def finished(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> Iterator[tuple[Emulator, Path]]:
    """A finished run of 6 tasks in ``out``; yields the emulator and the pipeline."""
    emu = make_emulator(task_seconds=(0.1, 0.1))
    path = write_pipeline(tmp_path)
    done = rhflow(emu, api_key, "run", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert created(emu) == TASKS
    yield emu, path


def _truncate(db: Path) -> None:
    db.write_bytes(b"")
    for extra in ("-wal", "-shm"):
        db.with_name(db.name + extra).unlink(missing_ok=True)


def _garbage(db: Path) -> None:
    _truncate(db)
    db.write_bytes(os.urandom(4096))


def _other_schema(db: Path) -> None:
    _truncate(db)
    db.unlink()
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE tasks (id TEXT PRIMARY KEY, step TEXT)")
        conn.execute("INSERT INTO tasks VALUES ('x', 'gen')")


def _bad_json(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE tasks SET params = '{\"seed\": ' WHERE rowid = (SELECT min(rowid) FROM tasks)"
        )


def _deleted(db: Path) -> None:
    shutil.rmtree(db.parent)


REBUILT = {
    "truncated to 0 bytes": (_truncate, "was empty or missing; rebuilt 6 task(s)"),
    "deleted": (_deleted, "was empty or missing; rebuilt 6 task(s)"),
    "garbage bytes": (_garbage, "could not be read (file is not a database); moved it to"),
    "another schema": (_other_schema, "could not be read (table tasks has no column"),
    "a bad JSON column": (_bad_json, "could not be read (task "),
}


@pytest.mark.parametrize("case", sorted(REBUILT))
def test_damaged_state_is_rebuilt_from_the_manifest_and_nothing_is_created_again(
    case: str, finished: tuple[Emulator, Path], api_key: str, tmp_path: Path
) -> None:
    emu, path = finished
    damage, said = REBUILT[case]
    damage(tmp_path / "out" / ".rhflow" / "state.db")
    again = rhflow(emu, api_key, "run", str(path), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr
    assert said in again.stderr
    assert created(emu) == TASKS  # nothing paid again
    assert intact(tmp_path / "out")
    status = rhflow(emu, api_key, "status", "out", cwd=tmp_path)
    assert status.returncode == 0 and "6 succeeded" in status.stdout, status.stderr


def test_a_rebuilt_state_downloads_missing_files_instead_of_creating_tasks_again(
    finished: tuple[Emulator, Path], api_key: str, tmp_path: Path
) -> None:
    emu, path = finished
    out = tmp_path / "out"
    _truncate(out / ".rhflow" / "state.db")
    (out / "img-3.png").unlink()
    again = rhflow(emu, api_key, "run", str(path), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert created(emu) == TASKS
    assert intact(out)


def test_a_state_of_a_newer_rhflow_stops_the_run_before_any_create(
    finished: tuple[Emulator, Path], api_key: str, tmp_path: Path
) -> None:
    emu, path = finished
    db = tmp_path / "out" / ".rhflow" / "state.db"
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    again = rhflow(emu, api_key, "run", str(path), cwd=tmp_path)
    assert again.returncode == 2
    assert again.stderr == (
        f"Error: the state store {db.resolve()} was written by a newer rhflow (schema 99; this "
        f"rhflow reads 2); run it with that rhflow, or move it aside (mv {db.resolve()} "
        f"{db.resolve()}.new) and run again to rebuild it from manifest.json\n"
    )
    assert created(emu) == TASKS
    os.replace(db, db.with_name("state.db.new"))  # the way out the message gives
    for extra in ("-wal", "-shm"):
        db.with_name(db.name + extra).unlink(missing_ok=True)
    assert rhflow(emu, api_key, "run", str(path), cwd=tmp_path).returncode == 0
    assert created(emu) == TASKS


def test_damaged_state_without_a_manifest_stops_before_any_create(
    finished: tuple[Emulator, Path], api_key: str, tmp_path: Path
) -> None:
    emu, path = finished
    out = tmp_path / "out"
    _garbage(out / ".rhflow" / "state.db")
    (out / "manifest.json").unlink()
    again = rhflow(emu, api_key, "run", str(path), cwd=tmp_path)
    assert again.returncode == 2, again.stderr
    assert "Traceback" not in again.stderr
    assert again.stderr.startswith("Error: the state store ")
    assert "there is no readable " in again.stderr and "nothing was sent" in again.stderr
    assert "move it aside (mv " in again.stderr
    assert created(emu) == TASKS
    assert emu.stats()["requests"].get("/task/openapi/create", 0) == TASKS


def test_rhflow_being_a_file_and_the_lock_a_folder_stop_with_the_way_out(
    finished: tuple[Emulator, Path], api_key: str, tmp_path: Path
) -> None:
    emu, path = finished
    out = tmp_path / "out"
    lock = out / ".rhflow" / "lock"
    lock.unlink()
    lock.mkdir()
    again = rhflow(emu, api_key, "run", str(path), cwd=tmp_path)
    assert again.returncode == 2
    assert again.stderr == (
        f"Error: {lock.resolve()} is a folder, not rhflow's lock file; remove it "
        f"(rmdir {lock.resolve()}) and run again\n"
    )
    lock.rmdir()
    shutil.move(out / ".rhflow", tmp_path / "kept")
    (out / ".rhflow").write_text("not a folder")
    again = rhflow(emu, api_key, "run", str(path), cwd=tmp_path)
    assert again.returncode == 2
    state = (out / ".rhflow").resolve()
    assert again.stderr == (
        f"Error: {state} is a file, not the folder rhflow keeps its state in; move it aside "
        f"(mv {state} {state}.bak) and run again\n"
    )
    assert created(emu) == TASKS
    (out / ".rhflow").unlink()
    shutil.move(tmp_path / "kept", out / ".rhflow")
    assert rhflow(emu, api_key, "run", str(path), cwd=tmp_path).returncode == 0
    assert created(emu) == TASKS


def test_status_of_a_damaged_state_says_so_without_a_traceback(
    finished: tuple[Emulator, Path], api_key: str, tmp_path: Path
) -> None:
    emu, _ = finished
    _bad_json(tmp_path / "out" / ".rhflow" / "state.db")
    shown = rhflow(emu, api_key, "status", "out", cwd=tmp_path)
    assert shown.returncode == 2
    assert "Traceback" not in shown.stderr
    assert "holds a record that cannot be read" in shown.stderr

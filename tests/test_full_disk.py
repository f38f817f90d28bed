"""A full disk is not a network fault: the output folder on a small tmpfs, under RLIMIT_FSIZE,
read-only, or used by two runs at once. Each time: a message naming the folder and the cause, no
more creates, nothing created twice, and the next run downloads what is missing.

The tmpfs cases need ``mount`` (root, or a user namespace); they are skipped with the reason
when the system refuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rhflow.emulator import Emulator

T2I = "1904136902449209346"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def write_pipeline(folder: Path, tasks: int, *, side: int = 512, concurrency: int = 2) -> Path:
    path = folder / "p.yaml"
    path.write_text(f"""
version: 1
name: disk
output: out
concurrency: {concurrency}
steps:
  gen:
    workflow: "{T2I}"
    retries: 0
    matrix: {{seed: {{range: [1, {tasks + 1}]}}}}
    nodes:
      "3": {{seed: "{{{{ seed }}}}"}}
      "5": {{width: {side}, height: {side}}}
    outputs: "img-{{{{ seed }}}}.{{{{ ext }}}}"
""")
    return path


def rhflow(
    emu: Emulator, key: str, path: Path, *, fsize: int | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RH_API_KEY": key, "PYTHONPATH": str(REPO)}
    env.pop("RH_BASE_URL", None)

    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(
        [sys.executable, "-m", "rhflow", "run", str(path), "--base-url", emu.url],
        cwd=path.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
    )


def mount(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["mount", *args], capture_output=True, text=True)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[Path, str], None]]:
    """``tmpfs(folder, options)`` mounts a tmpfs there (unmounted at the end of the test)."""
    mounted: list[Path] = []

    def make(folder: Path, options: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        done = mount("-t", "tmpfs", "-o", options, "tmpfs", str(folder))
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
        mounted.append(folder)

    yield make
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def remount(folder: Path, options: str) -> None:
    done = mount("-o", f"remount,{options}", str(folder))
    assert done.returncode == 0, done.stderr


def created(emu: Emulator) -> int:
    return int(emu.stats()["tasks"]["created"])


def all_intact(out: Path, tasks: int) -> bool:
    manifest = json.loads((out / "manifest.json").read_text())
    files = [o for t in manifest["tasks"] for o in t["outputs"]]
    return len(files) == tasks and all(
        hashlib.sha256((out / o["path"]).read_bytes()).hexdigest() == o["sha256"] for o in files
    )


def assert_names_the_folder(run: subprocess.CompletedProcess[str], out: Path, cause: str) -> None:
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert f"cannot write into {out}: {cause}; no more tasks are created" in run.stderr
    assert "CONNECTION_ERROR" not in run.stderr and "check --base-url" not in run.stderr


def test_a_full_tmpfs_stops_creates_and_the_next_run_downloads_what_is_missing(
    make_emulator: Callable[..., Emulator],
    api_key: str,
    tmp_path: Path,
    tmpfs: Callable[[Path, str], None],
) -> None:
    emu = make_emulator(task_seconds=(0.2, 0.2))
    out = tmp_path / "out"
    tmpfs(out, "size=1500k")
    path = write_pipeline(tmp_path, 8)  # 8 PNGs of 377 KB: 3 fit
    first = rhflow(emu, api_key, path)
    assert first.returncode == 1 and "Traceback" not in first.stderr
    assert "CONNECTION_ERROR" not in first.stderr and "check --base-url" not in first.stderr
    # whichever write meets the full disk first, an output or the state, names it
    assert (
        f"cannot write into {out}: No space left on device; no more tasks are created"
        in first.stderr
        or f"cannot write the state store {out}/.rhflow/state.db: database or disk is full"
        in first.stderr
    ), first.stderr
    made = created(emu)
    assert made < 8  # no create after the first write error (2 in flight at most)
    remount(out, "size=20m")
    again = rhflow(emu, api_key, path)
    assert again.returncode == 0, again.stderr
    stats = emu.stats()["tasks"]
    assert stats["created"] == 8 and stats["duplicates"] == 0
    assert all_intact(out, 8)


def test_a_file_size_limit_is_named_and_nothing_is_created_twice(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator(task_seconds=(0.2, 0.2))
    path = write_pipeline(tmp_path, 4, concurrency=1)
    first = rhflow(emu, api_key, path, fsize=300_000)  # each PNG is 377 KB
    assert_names_the_folder(first, tmp_path / "out", "File too large")
    assert created(emu) == 1  # the first write error stopped the creates
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [t["status"] for t in manifest["tasks"]] == ["failed", "pending", "pending", "pending"]
    again = rhflow(emu, api_key, path)
    assert again.returncode == 0, again.stderr
    stats = emu.stats()["tasks"]
    assert stats["created"] == 4 and stats["duplicates"] == 0
    assert all_intact(tmp_path / "out", 4)


def test_a_read_only_output_folder_is_named_and_the_next_run_recovers(
    make_emulator: Callable[..., Emulator],
    api_key: str,
    tmp_path: Path,
    tmpfs: Callable[[Path, str], None],
) -> None:
    emu = make_emulator(task_seconds=(0.2, 0.2))
    out = tmp_path / "out"
    tmpfs(out, "size=20m")
    path = write_pipeline(tmp_path, 4, side=64)
    assert rhflow(emu, api_key, path).returncode == 0
    (out / "img-2.png").unlink()
    remount(out, "ro")
    blocked = rhflow(emu, api_key, path)
    assert blocked.returncode == 2
    assert blocked.stderr == (
        f"Error: cannot write in {out / '.rhflow'}: Read-only file system; rhflow keeps its "
        "state there: make the folder writable (or free some space), or choose another output "
        "folder with --out\n"
    )
    remount(out, "rw")
    again = rhflow(emu, api_key, path)
    assert again.returncode == 0, again.stderr
    assert created(emu) == 4 and all_intact(out, 4)


def test_a_read_only_folder_for_the_outputs_stops_creates_with_its_name(
    make_emulator: Callable[..., Emulator],
    api_key: str,
    tmp_path: Path,
    tmpfs: Callable[[Path, str], None],
) -> None:
    emu = make_emulator(task_seconds=(0.2, 0.2))
    path = write_pipeline(tmp_path, 4, side=64, concurrency=1)
    path.write_text(path.read_text().replace('outputs: "img-', 'outputs: "ro/img-'))
    images = tmp_path / "out" / "ro"
    tmpfs(images, "size=1m,ro")
    first = rhflow(emu, api_key, path)
    assert first.returncode == 1, first.stderr
    assert "Traceback" not in first.stderr
    assert "Read-only file system; no more tasks are created" in first.stderr
    assert created(emu) == 1
    remount(images, "rw")
    again = rhflow(emu, api_key, path)
    assert again.returncode == 0, again.stderr
    assert created(emu) == 4 and all_intact(tmp_path / "out", 4)


def test_two_runs_at_once_on_one_folder_the_second_stops_and_nothing_is_lost(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator(task_seconds=(1.0, 1.0))
    path = write_pipeline(tmp_path, 4, side=64)
    env = {**os.environ, "RH_API_KEY": api_key, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "rhflow", "run", str(path), "--base-url", emu.url, "--json"]
    with subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as first:
        assert first.stdout is not None
        for line in first.stdout:
            if json.loads(line)["event"] == "task_submitted":
                break
        second = rhflow(emu, api_key, path)
        first.communicate(timeout=60)
    assert first.returncode == 0
    assert second.returncode == 1
    assert second.stderr == (
        f"Error: another rhflow run (pid {first.pid}) is using {tmp_path / 'out'}; wait for it "
        "to finish, stop it, or pass a different --out\n"
    )
    assert created(emu) == 4 and all_intact(tmp_path / "out", 4)
    assert rhflow(emu, api_key, path).returncode == 0
    assert created(emu) == 4


def test_sigxfsz_is_ignored_so_a_size_limit_is_an_error_not_a_crash() -> None:
    assert signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN

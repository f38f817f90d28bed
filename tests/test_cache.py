"""``--cache``: finished tasks shared across output folders and machines. A second machine is
simulated by a second output folder sharing the cache: it takes every task from the cache and
sends no create (the emulator's request counts say so); a corrupt or partial entry is ignored
with a note, never trusted; another server's results are never taken."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rhflow.cli import main
from rhflow.emulator import Emulator
from rhflow.execute.runner import run_pipeline
from rhflow.record.cache import ENTRY, PREFIX, open_cache, server_folder

T2I = "1904136902449209346"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def pipeline(tmp_path: Path) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(f"""
version: 1
name: cached
output: out
steps:
  gen:
    workflow: "{T2I}"
    retries: 0
    matrix:
      seed: [1, 2]
    nodes:
      "3": {{seed: "{{{{ seed }}}}"}}
      "5": {{width: 64, height: 64}}
    outputs: "gen-{{{{ seed }}}}.{{{{ ext }}}}"
  up:
    needs: gen
    workflow: "1904136902449209347"
    retries: 0
    nodes:
      "2": {{image: "{{{{ needs.gen.outputs[0] }}}}"}}
    outputs: "up-{{{{ seed }}}}.{{{{ ext }}}}"
""")
    return path


def creates(emu: Emulator) -> int:
    return int(emu.stats()["requests"].get("/task/openapi/create", 0))


def run(path: Path, emu: Emulator, key: str, out: str, cache: str, **options: Any) -> Any:
    return run_pipeline(
        path, base_url=emu.url, api_key=key, out=out, cache=cache, **options
    ).manifest


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


@pytest.fixture(params=["folder", "memory", "file"])
def cache_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "folder":
        return str(tmp_path / "shared-cache")
    if request.param == "memory":
        return f"memory://rhflow-test-{uuid.uuid4().hex}"
    return (tmp_path / "file-cache").as_uri()


def test_a_second_machine_takes_every_task_from_the_cache_and_sends_no_create(
    tmp_path: Path, make_emulator: Callable[..., Emulator], api_key: str, cache_url: str
) -> None:
    emu = make_emulator()
    path = pipeline(tmp_path)
    first = run(path, emu, api_key, "machine-a", cache_url)
    assert first.status == "succeeded" and creates(emu) == 4
    second = run(path, emu, api_key, "machine-b", cache_url)
    assert second.status == "succeeded"
    assert creates(emu) == 4  # nothing was paid for again
    assert files(tmp_path / "machine-b") == files(tmp_path / "machine-a")
    assert len(files(tmp_path / "machine-b")) == 4
    assert [t.id for t in second.tasks] == [t.id for t in first.tasks]
    for task in second.tasks:
        assert any(note.startswith(f"taken from the cache {cache_url}") for note in task.notes)
        assert task.coins is None and task.task_id is not None
    # the cached upstream outputs fed the downstream tasks exactly as on machine A
    by_id = {t.id: t for t in first.tasks}
    assert [t.node_info_list for t in second.tasks] == [
        by_id[t.id].node_info_list for t in second.tasks
    ]


def test_a_corrupt_file_or_a_partial_entry_is_ignored_with_a_note(
    tmp_path: Path, make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    from rhflow.api.client import origin_of

    emu = make_emulator()
    path = pipeline(tmp_path)
    cache = tmp_path / "cache"
    first = run(path, emu, api_key, "a", str(cache))
    gen1, gen2 = [t.id for t in first.tasks if t.step == "gen"]
    server = cache / PREFIX / server_folder(origin_of(emu.url))
    (server / gen1 / "0.png").write_bytes(b"\x89PNG\r\n\x1a\nnot the image")  # corrupt
    (server / gen2 / ENTRY).unlink()  # partial: files without their entry
    second = run(path, emu, api_key, "b", str(cache))
    assert second.status == "succeeded"
    assert creates(emu) == 4 + 2  # both gen tasks ran again; the ups came from the cache
    notes = {t.id: t.notes for t in second.tasks}
    assert any("cache entry ignored" in n and "does not match its entry" in n for n in notes[gen1])
    assert not any("cache" in n for n in notes[gen2])  # no entry: just not in the cache
    assert files(tmp_path / "b") == files(tmp_path / "a")
    # the corrupt entry was replaced by this run's good one
    third = run(path, emu, api_key, "c", str(cache))
    assert third.status == "succeeded" and creates(emu) == 6


def test_an_unreadable_entry_is_ignored(
    tmp_path: Path, make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    from rhflow.api.client import origin_of

    emu = make_emulator()
    path = pipeline(tmp_path)
    cache = tmp_path / "cache"
    first = run(path, emu, api_key, "a", str(cache))
    server = cache / PREFIX / server_folder(origin_of(emu.url))
    for task in first.tasks:
        (server / task.id / ENTRY).write_text('{"cache_version": 1, "task": ')
    second = run(path, emu, api_key, "b", str(cache))
    assert second.status == "succeeded" and creates(emu) == 8
    assert all("is not a valid entry" in " ".join(t.notes) for t in second.tasks)


def test_results_of_another_server_are_not_taken(
    tmp_path: Path, make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    one, two = make_emulator(), make_emulator()
    path = pipeline(tmp_path)
    cache = str(tmp_path / "cache")
    assert run(path, one, api_key, "a", cache).status == "succeeded"
    second = run(path, two, api_key, "b", cache)
    assert second.status == "succeeded" and creates(two) == 4
    assert not any("cache" in n for t in second.tasks for n in t.notes)


def test_force_runs_again_and_refreshes_the_entry(
    tmp_path: Path, make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    emu = make_emulator()
    path = pipeline(tmp_path)
    cache = str(tmp_path / "cache")
    run(path, emu, api_key, "a", cache)
    forced = run(path, emu, api_key, "b", cache, force=True)
    assert forced.status == "succeeded" and creates(emu) == 8


def test_the_cli_reads_rhflow_cache_and_refuses_a_bad_url(
    tmp_path: Path,
    make_emulator: Callable[..., Emulator],
    api_key: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emu = make_emulator()
    path = pipeline(tmp_path)
    monkeypatch.setenv("RH_API_KEY", api_key)
    monkeypatch.setenv("RHFLOW_CACHE", str(tmp_path / "env-cache"))
    assert main(["run", str(path), "--base-url", emu.url, "--out", "a", "-q"]) == 0
    assert main(["run", str(path), "--base-url", emu.url, "--out", "b", "-q"]) == 0
    assert creates(emu) == 4
    entries = list((tmp_path / "env-cache").rglob(ENTRY))
    assert len(entries) == 4
    text = "".join(p.read_text() for p in entries)
    assert api_key not in text and json.loads(entries[0].read_text())["cache_version"] == 1
    capsys.readouterr()
    code = main(["run", str(path), "--base-url", emu.url, "--cache", "nosuch://x/y"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("Error: --cache nosuch://x/y: ") and creates(emu) == 4


def test_open_cache_translates_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(Exception, match=r"--cache .*f: not a folder"):
        open_cache(str(tmp_path / "f"))

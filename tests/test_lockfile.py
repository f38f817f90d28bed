"""``rhflow.lock``: a workflow rewritten behind its id between two runs is caught, names what
changed, means new tasks (never a stale skip), and with --frozen stops the run before any create.
Runs talk to the emulator serving ``--workflows DIR``, whose files the tests rewrite."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rhflow.cli import main
from rhflow.emulator import Emulator
from rhflow.emulator.workflows import BUILTIN_WORKFLOWS, TEXT_APP, TEXT_TO_IMAGE
from rhflow.execute.runner import run_pipeline
from rhflow.pipeline.loader import load_pipeline
from rhflow.pipeline.lockfile import LOCK_NAME, locked, read_lock
from rhflow.planning.planner import plan

WF = "7000000000000000001"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def write_workflow(folder: Path, steps: int = 20) -> None:
    graph = copy.deepcopy(BUILTIN_WORKFLOWS[TEXT_TO_IMAGE])
    graph["3"]["inputs"]["steps"] = steps
    folder.mkdir(exist_ok=True)
    (folder / f"{WF}.json").write_text(json.dumps(graph))


def pipeline(tmp_path: Path, *, app: bool = False) -> Path:
    path = tmp_path / "p.yaml"
    extra = (
        f"""
  text:
    app: "{TEXT_APP}"
    retries: 0
    nodes:
      "6": {{text: "a text"}}"""
        if app
        else ""
    )
    path.write_text(f"""
version: 1
name: locked
output: out
steps:
  gen:
    workflow: "{WF}"
    retries: 0
    matrix:
      seed: [1, 2]
    nodes:
      "3": {{seed: "{{{{ seed }}}}"}}
    outputs: "gen-{{{{ seed }}}}.{{{{ ext }}}}"{extra}
""")
    return path


@pytest.fixture
def served(tmp_path: Path, make_emulator: Callable[..., Emulator]) -> Emulator:
    write_workflow(tmp_path / "wf")
    return make_emulator(workflows_dir=str(tmp_path / "wf"))


def cli(args: list[str], emu: Emulator, key: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("RH_API_KEY", key)
    return main([*args, "--base-url", emu.url])


def creates(emu: Emulator) -> int:
    return int(emu.stats()["requests"].get("/task/openapi/create", 0))


def run(path: Path, emu: Emulator, key: str, **options: Any) -> Any:
    return run_pipeline(path, base_url=emu.url, api_key=key, **options).manifest


def test_lock_writes_sorted_json_with_hash_time_and_server(
    tmp_path: Path, served: Emulator, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = pipeline(tmp_path, app=True)
    assert cli(["lock", str(path)], served, api_key, monkeypatch) == 0
    text = (tmp_path / LOCK_NAME).read_text()
    data = json.loads(text)
    assert text == json.dumps(data, indent=2, sort_keys=True) + "\n"
    entry = data["workflows"][WF]
    assert len(entry["sha256"]) == 64 and entry["fetched_at"].endswith("Z")
    assert entry["server"] == served.url and "inputs.steps" in entry["nodes"]["3"]
    assert set(data["apps"]) == {TEXT_APP} and data["apps"][TEXT_APP]["nodes"]
    assert api_key not in text


def test_a_workflow_changed_between_runs_warns_names_fields_and_runs_new_tasks(
    tmp_path: Path,
    served: Emulator,
    api_key: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = pipeline(tmp_path)
    assert cli(["lock", str(path)], served, api_key, monkeypatch) == 0
    first = run(path, served, api_key)
    assert first.status == "succeeded" and creates(served) == 2
    again = run(path, served, api_key)  # unchanged: everything is skipped
    assert [t.id for t in again.tasks] == [t.id for t in first.tasks] and creates(served) == 2

    write_workflow(tmp_path / "wf", steps=30)  # edited on the "website", same id
    capsys.readouterr()
    code = cli(["run", str(path), "--overwrite"], served, api_key, monkeypatch)
    err = capsys.readouterr().err
    assert code == 0
    assert f"warning: workflow {WF} changed on the server since {tmp_path / LOCK_NAME}" in err
    assert "node 3: inputs.steps changed; its tasks get new ids and run again" in err
    assert creates(served) == 4  # new tasks, not a stale skip
    changed = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert {t["id"] for t in changed["tasks"]}.isdisjoint(t.id for t in first.tasks)


def test_frozen_fails_before_anything_is_sent(
    tmp_path: Path,
    served: Emulator,
    api_key: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = pipeline(tmp_path)
    assert cli(["lock", str(path)], served, api_key, monkeypatch) == 0
    write_workflow(tmp_path / "wf", steps=31)
    capsys.readouterr()
    code = cli(["run", str(path), "--frozen"], served, api_key, monkeypatch)
    err = capsys.readouterr().err
    assert code == 2 and creates(served) == 0
    assert err.startswith(f"Error: --frozen: workflow {WF} changed on the server since")
    assert "node 3: inputs.steps changed" in err
    assert err.endswith(
        f"nothing was submitted; accept the change with: rhflow lock --update {path}\n"
    )
    assert not (tmp_path / "out" / "manifest.json").exists()

    # --update takes the change; the frozen run then goes through
    assert cli(["lock", "--update", str(path)], served, api_key, monkeypatch) == 0
    assert cli(["run", str(path), "--frozen", "-q"], served, api_key, monkeypatch) == 0
    assert creates(served) == 2


def test_frozen_without_a_lock_is_an_error(
    tmp_path: Path,
    served: Emulator,
    api_key: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = pipeline(tmp_path)
    assert cli(["run", str(path), "--frozen"], served, api_key, monkeypatch) == 2
    err = capsys.readouterr().err
    assert err == (
        f"Error: --frozen: there is no {tmp_path / LOCK_NAME}; write it with: rhflow lock {path}\n"
    )
    assert creates(served) == 0


def test_lock_without_update_keeps_entries_and_reports_a_change(
    tmp_path: Path,
    served: Emulator,
    api_key: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = pipeline(tmp_path)
    assert cli(["lock", str(path)], served, api_key, monkeypatch) == 0
    before = (tmp_path / LOCK_NAME).read_text()
    write_workflow(tmp_path / "wf", steps=40)
    capsys.readouterr()
    assert cli(["lock", str(path)], served, api_key, monkeypatch) == 0
    out = capsys.readouterr().out
    assert (tmp_path / LOCK_NAME).read_text() == before
    assert "node 3: inputs.steps changed; kept sha256:" in out and "--update" in out
    assert cli(["lock", "--update", str(path)], served, api_key, monkeypatch) == 0
    assert (tmp_path / LOCK_NAME).read_text() != before


def test_a_folder_run_before_the_lock_still_resumes(
    tmp_path: Path, served: Emulator, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = pipeline(tmp_path)
    before = run(path, served, api_key)
    assert before.status == "succeeded" and creates(served) == 2
    assert cli(["lock", str(path)], served, api_key, monkeypatch) == 0
    after = run(path, served, api_key)
    assert after.status == "succeeded" and creates(served) == 2  # nothing paid again
    assert {t.id for t in after.tasks}.isdisjoint(t.id for t in before.tasks)
    assert all("before rhflow.lock" in t.notes[-1] for t in after.tasks)
    assert [t.outputs[0].path for t in after.tasks] == [t.outputs[0].path for t in before.tasks]


def test_plan_ids_use_the_lock_and_no_lock_keeps_old_ids(
    tmp_path: Path,
    served: Emulator,
    api_key: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = pipeline(tmp_path)
    plain = [t.id for t in plan(load_pipeline(path)).tasks]
    assert [t.id for t in plan(locked(load_pipeline(path))).tasks] == plain  # no lock yet
    assert cli(["lock", str(path)], served, api_key, monkeypatch) == 0
    graph = plan(locked(load_pipeline(path)))
    assert [t.legacy_id for t in graph.tasks] == plain
    assert [t.id for t in graph.tasks] != plain
    manifest = run(path, served, api_key)
    assert [t.id for t in manifest.tasks] == [t.id for t in graph.tasks]
    capsys.readouterr()
    assert main(["plan", str(path), "--json"]) == 0  # the command shows the same ids
    shown = json.loads(capsys.readouterr().out)
    assert [t["id"] for t in shown["tasks"]] == [t.id for t in graph.tasks]


def test_an_unreadable_lock_is_a_clear_error(
    tmp_path: Path,
    served: Emulator,
    api_key: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = pipeline(tmp_path)
    (tmp_path / LOCK_NAME).write_text("{not json")
    assert cli(["run", str(path)], served, api_key, monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"Error: {tmp_path / LOCK_NAME} is not a valid rhflow.lock (")
    assert err.endswith("write it again with: rhflow lock --update\n")
    assert creates(served) == 0
    assert cli(["lock", "--update", str(path)], served, api_key, monkeypatch) == 0
    lock = read_lock(tmp_path / LOCK_NAME)
    assert lock is not None and ("workflow", WF) in lock.entries


def test_validate_compares_with_the_lock(
    tmp_path: Path,
    served: Emulator,
    api_key: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = pipeline(tmp_path)
    assert cli(["lock", str(path)], served, api_key, monkeypatch) == 0
    write_workflow(tmp_path / "wf", steps=50)
    capsys.readouterr()
    assert cli(["validate", str(path)], served, api_key, monkeypatch) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: ok (2 tasks)\n"
    assert err.startswith(f"{path}: warning: workflow {WF} changed on the server since")
    assert "node 3: inputs.steps changed" in err
    assert cli(["validate", "--frozen", str(path)], served, api_key, monkeypatch) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"{path}: --frozen: workflow {WF} changed on the server since")
    assert creates(served) == 0
    monkeypatch.delenv("RH_API_KEY")
    assert main(["validate", "--strict", str(path)]) == 1
    assert "rhflow.lock not compared: no API key" in capsys.readouterr().out


def test_a_run_asks_for_a_locked_workflow_once(
    tmp_path: Path, served: Emulator, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock check fetches the workflow fresh; the override check uses that same copy."""

    def fetches() -> int:
        return int(served.stats()["requests"].get("/api/openapi/getJsonApiFormat", 0))

    path = pipeline(tmp_path)
    assert cli(["lock", str(path)], served, api_key, monkeypatch) == 0
    before = fetches()
    assert run(path, served, api_key).status == "succeeded"
    assert fetches() - before == 1

"""The manifest journal rebuilds only the entries of tasks that changed, and writes the same
bytes a whole rebuild would; the store keeps what it wrote and says which tasks changed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rhflow.model import PlannedTask, Target, TaskGraph
from rhflow.record import journal as journal_module
from rhflow.record.journal import Journal
from rhflow.record.manifest import OutputFile, manifest_text, read_manifest
from rhflow.record.store import OutputRecord, Store, TaskRecord

TASKS = 30


def _graph(tmp_path: Path) -> TaskGraph:
    tasks = tuple(
        PlannedTask(
            id=f"task{i:03d}",
            step="gen",
            params={"seed": i, "subject": "猫"},
            target=Target("workflow", "1904136902449209346"),
            node_info_list=({"nodeId": "3", "fieldName": "seed", "fieldValue": i},),
        )
        for i in range(TASKS)
    )
    return TaskGraph("p", "h", tmp_path / "p.yaml", tmp_path / "out", 2, tasks)


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    built: list[str] = []
    real = journal_module.task_entry

    def counted(task: PlannedTask, *args: Any) -> Any:
        built.append(task.id)
        return real(task, *args)

    monkeypatch.setattr(journal_module, "task_entry", counted)
    return built


def test_a_write_rebuilds_only_the_tasks_written_since_the_last_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = _counting(monkeypatch)
    graph = _graph(tmp_path)
    path = tmp_path / "out" / "manifest.json"
    with Store.for_output(tmp_path / "out") as store:
        store.save_many([TaskRecord(t.id, t.step, "pending") for t in graph.tasks])
        journal = Journal(path, graph, store)
        journal.write()
        assert len(built) == TASKS
        built.clear()
        journal.write()
        assert built == []  # nothing changed: nothing rebuilt
        store.update("task003", status="running", remote_id="1904000000000000003")
        output = OutputRecord(0, "9", "http://x/a.png", "png", str(tmp_path / "out/a.png"))
        store.update("task007", status="succeeded", outputs=(output,), coins=2.0)
        journal.set_progress("task003", 0.5)
        journal.set_progress("task011", 0.25)
        journal.write()
        assert sorted(built) == ["task003", "task007", "task011"]
    manifest = read_manifest(path)
    by_id = {t.id: t for t in manifest.tasks}
    assert by_id["task003"].status == "running" and by_id["task003"].progress == 0.5
    assert by_id["task007"].outputs == (
        OutputFile("9", "http://x/a.png", "a.png", None, None, "png", 0),
    )
    assert manifest.counts["succeeded"] == 1 and manifest.counts["running"] == 1
    assert manifest.cost["coins"] == 2.0


def test_the_file_is_what_a_whole_rebuild_writes(tmp_path: Path) -> None:
    graph = _graph(tmp_path)
    path = tmp_path / "out" / "manifest.json"
    with Store.for_output(tmp_path / "out") as store:
        store.save_many([TaskRecord(t.id, t.step, "pending") for t in graph.tasks[:20]])
        journal = Journal(path, graph, store, server={"origin": "http://x", "emulated": True})
        journal.write()
        store.update("task001", status="failed", failure={"kind": "failed", "message": "é"})
        journal.errors.append("a run error")
        final = journal.finish("failed")
    text = path.read_text(encoding="utf-8")
    assert text == manifest_text(final)
    assert json.loads(text)["tasks"][1]["failure"] == "é"
    assert final.finished_at is not None


def test_an_empty_graph_writes_an_empty_task_list(tmp_path: Path) -> None:
    graph = TaskGraph("p", "h", tmp_path / "p.yaml", tmp_path, 2, ())
    with Store.for_output(tmp_path) as store:
        final = Journal(tmp_path / "manifest.json", graph, store).finish("succeeded")
    assert (tmp_path / "manifest.json").read_text(encoding="utf-8") == manifest_text(final)
    assert read_manifest(tmp_path / "manifest.json").tasks == ()


def test_the_store_reports_what_changed_and_reads_back_what_it_wrote(tmp_path: Path) -> None:
    with Store.for_output(tmp_path) as store:
        store.save_many([TaskRecord("a", "gen", "pending"), TaskRecord("b", "gen", "pending")])
        assert store.take_changed() == {"a", "b"}
        assert store.take_changed() == set()
        output = OutputRecord(0, "9", "http://x/a.png", "png")
        store.update("a", status="downloading", outputs=(output,))
        done = store.update("a", status="succeeded", remote_id="1904000000000000001")
        store.forget(["b"])
        assert store.take_changed() == {"a", "b"}
        assert store.get("a") == done and store.get("b") is None
    with Store.for_output(tmp_path) as again:  # what the database holds, read afresh
        assert again.tasks() == {"a": done}
        assert again.remote_ids() == {"1904000000000000001": "a"}

"""Manifest objects, their JSON, the schema, and the atomic writer."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest

from rhflow.errors import StateError
from rhflow.record.manifest import (
    Manifest,
    OutputFile,
    TaskEntry,
    count_statuses,
    read_manifest,
    write_manifest,
)

SCHEMA = json.loads((Path(__file__).parent.parent / "schemas" / "manifest.schema.json").read_text())


def _manifest(status: str = "succeeded") -> Manifest:
    output = OutputFile("9", "http://127.0.0.1/x.png", "cat-1-0.png", "a" * 64, 1234, "png")
    tasks = (
        TaskEntry(
            id="abc123",
            step="portrait",
            params={"subject": "cat", "seed": 1},
            node_info_list=[{"nodeId": "6", "fieldName": "text", "fieldValue": "a cat"}],
            task_id="1904000000000000001",
            status="succeeded",
            attempts=1,
            outputs=(output,),
            submitted_at="2026-01-01T00:00:00.000Z",
            finished_at="2026-01-01T00:00:02.000Z",
            duration=2.0,
            cost_time=2.0,
            coins=1.0,
        ),
        TaskEntry(
            id="def456",
            step="portrait",
            params={"subject": "dog", "seed": 1},
            node_info_list=None,
            task_id=None,
            status="failed",
            attempts=3,
            failure="node 3 (KSampler) raised torch.OutOfMemoryError: out of memory",
            failure_detail={"kind": "failed", "message": "out of memory", "node_id": "3"},
        ),
    )
    return Manifest(
        rhflow_version="0.1.0",
        pipeline="portraits",
        pipeline_hash="h",
        status=status,
        started_at="2026-01-01T00:00:00.000Z",
        finished_at="2026-01-01T00:00:03.000Z",
        tasks=tasks,
        counts=count_statuses(tasks),
        cost={"coins": 1.0, "cost_time": 2.0},
    )


def test_a_manifest_round_trips_through_its_file(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    write_manifest(path, _manifest())
    assert read_manifest(path) == _manifest()


def test_the_written_file_matches_the_schema_and_the_contract_keys(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    write_manifest(path, _manifest("failed"))
    data = json.loads(path.read_text())
    jsonschema.validate(data, SCHEMA)
    assert data["manifest_version"] == 1 and data["pipeline"] == "portraits"
    task = data["tasks"][0]
    assert {"id", "step", "params", "node_info_list", "task_id", "status", "attempts"} <= set(task)
    assert task["outputs"][0] == {
        "index": 0,
        "node_id": "9",
        "url": "http://127.0.0.1/x.png",
        "path": "cat-1-0.png",
        "sha256": "a" * 64,
        "bytes": 1234,
        "file_type": "png",
    }
    assert data["counts"] == {
        "total": 2,
        "succeeded": 1,
        "failed": 1,
        "cancelled": 0,
        "pending": 0,
        "running": 0,
    }


def test_the_schema_rejects_an_unknown_task_status() -> None:
    data = _manifest().to_dict()
    data["tasks"][0]["status"] = "done"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, SCHEMA)


def test_a_failed_write_leaves_the_previous_manifest_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "manifest.json"
    write_manifest(path, _manifest())
    before = path.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StateError, match=r"cannot write .*manifest.json: disk full"):
        write_manifest(path, _manifest("failed"))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_reading_a_missing_or_foreign_file_says_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(StateError, match=r"no manifest at .*; run the pipeline first"):
        read_manifest(tmp_path / "manifest.json")
    (tmp_path / "other.json").write_text('{"manifest_version": 9}')
    with pytest.raises(StateError, match="manifest_version 9 is not supported"):
        read_manifest(tmp_path / "other.json")
    (tmp_path / "torn.json").write_text('{"manifest_version": 1, "tas')
    with pytest.raises(StateError, match="cannot read the manifest"):
        read_manifest(tmp_path / "torn.json")

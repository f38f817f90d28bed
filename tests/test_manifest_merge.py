"""``rhflow manifest merge``: shards of a real sweep merged into one valid manifest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jsonschema
import pytest

from rhflow.cli import main
from rhflow.emulator import Emulator
from rhflow.record.manifest import read_manifest
from tests.sweep_runs import run_sweep, write_sweep

SCHEMA = json.loads((Path(__file__).parent.parent / "schemas" / "manifest.schema.json").read_text())


@pytest.fixture
def shards(emulator: Emulator, api_key: str, tmp_path: Path) -> list[Path]:
    sweep = write_sweep(tmp_path)
    paths = []
    for shard in ("1/2", "2/2"):
        out = tmp_path / "out" / f"shard-{shard[0]}"
        run_sweep(sweep, out, emulator, api_key, shard=shard)
        paths.append(out / "manifest.json")
    return paths


def test_shards_merge_into_one_valid_manifest_whose_paths_reach_the_files(
    shards: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    merged = tmp_path / "merged" / "manifest.json"
    assert main(["manifest", "merge", *map(str, shards), "-o", str(merged)]) == 0
    assert capsys.readouterr().out == (
        f"merged 2 manifests of 'sweep': 6 tasks (6 succeeded, 0 failed) -> {merged}\n"
    )
    data = json.loads(merged.read_text())
    jsonschema.validate(data, SCHEMA)
    parts = [json.loads(p.read_text()) for p in shards]
    assert all(0 < len(p["tasks"]) < 6 for p in parts)
    assert sorted(t["id"] for t in data["tasks"]) == sorted(
        t["id"] for p in parts for t in p["tasks"]
    )
    assert data["counts"] == {"total": 6, "succeeded": 6, "failed": 0, "cancelled": 0,
                              "pending": 0, "running": 0}  # fmt: skip
    assert data["cost"]["coins"] == sum(p["cost"]["coins"] for p in parts)
    assert (data["shard"], data["status"]) == (None, "succeeded")
    for task in data["tasks"]:
        for output in task["outputs"]:
            assert output["path"].startswith("../out/shard-")
            file = merged.parent / output["path"]
            assert hashlib.sha256(file.read_bytes()).hexdigest() == output["sha256"]


def test_a_task_in_two_manifests_keeps_its_newest_succeeded_record(
    shards: list[Path], tmp_path: Path
) -> None:
    first = json.loads(shards[0].read_text())
    task = first["tasks"][0]
    failed_later = json.loads(shards[1].read_text())
    failed_copy = {**task, "status": "failed", "failure": "out of memory", "outputs": [],
                   "finished_at": "2999-01-01T00:00:00.000+00:00"}  # fmt: skip
    failed_later["tasks"].append(failed_copy)
    later = tmp_path / "later.json"
    later.write_text(json.dumps(failed_later))
    older_success = {**task, "finished_at": "2000-01-01T00:00:00.000+00:00", "task_id": "1"}
    oldest = {**first, "tasks": [older_success]}
    (tmp_path / "oldest.json").write_text(json.dumps(oldest))
    out = tmp_path / "m.json"
    args = ["manifest", "merge", str(tmp_path / "oldest.json"), str(later), str(shards[0])]
    assert main([*args, "-o", str(out)]) == 0
    kept = [t for t in read_manifest(out).tasks if t.id == task["id"]]
    assert len(kept) == 1
    assert (kept[0].status, kept[0].task_id) == ("succeeded", task["task_id"])
    assert len(read_manifest(out).tasks) == 6


def test_manifests_of_other_pipelines_are_refused(
    shards: list[Path], tmp_path: Path, emulator: Emulator, api_key: str,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    other = write_sweep(tmp_path, name="other", file="other.yaml")
    run_sweep(other, tmp_path / "other", emulator, api_key, limit=1)
    changed = write_sweep(tmp_path, seeds=(1, 2, 3), file="changed.yaml")
    run_sweep(changed, tmp_path / "changed", emulator, api_key, limit=1)
    out = tmp_path / "m.json"
    assert main(["manifest", "merge", str(shards[0]), str(tmp_path / "other" / "manifest.json"),
                 "-o", str(out)]) == 2  # fmt: skip
    assert capsys.readouterr().err == (
        f"Error: {tmp_path / 'other' / 'manifest.json'} is a manifest of pipeline 'other' but "
        f"{shards[0]} is of pipeline 'sweep'; merge only manifests of one pipeline\n"
    )
    assert main(["manifest", "merge", str(shards[0]), str(tmp_path / "changed" / "manifest.json"),
                 "-o", str(out)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.startswith(f"Error: {tmp_path / 'changed' / 'manifest.json'} and {shards[0]} are")
    assert "as two different files (pipeline hash" in err
    assert main(["manifest", "merge", str(shards[0]), "-o", str(out)]) == 2
    assert "give at least two manifests" in capsys.readouterr().err
    assert not out.exists()

"""The SQLite state store: records survive reopening, uploads are remembered, the run lock."""

from __future__ import annotations

import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from rhflow.errors import StateError
from rhflow.record.lock import RunLock
from rhflow.record.store import OutputRecord, Store, TaskRecord


def _record(**changes: Any) -> TaskRecord:
    return replace(TaskRecord("t1", "gen", "pending", params={"seed": 1}), **changes)


def test_a_task_and_its_outputs_read_back_after_reopening(tmp_path: Path) -> None:
    outputs = (
        OutputRecord(0, "9", "http://x/a.png", "png", str(tmp_path / "a.png"), "ab" * 32, 12),
        OutputRecord(1, "9", "http://x/b.png", "png"),
    )
    record = _record(
        status="succeeded",
        remote_id="1904000000000000001",
        server="http://127.0.0.1:1",
        attempts=2,
        node_info_list=({"nodeId": "6", "fieldName": "text", "fieldValue": "a cat"},),
        submitted_at=10.0,
        finished_at=12.5,
        cost_time=2.0,
        coins=3.0,
        failure={"kind": "failed", "message": "boom"},
        notes=("first note",),
        outputs=outputs,
    )
    with Store.for_output(tmp_path) as store:
        store.save(record)
    with Store.for_output(tmp_path) as store:
        assert store.get("t1") == record
        assert store.tasks() == {"t1": record}
        assert store.remote_ids() == {"1904000000000000001": "t1"}
    assert (tmp_path / ".rhflow" / "state.db").is_file()


def test_update_changes_only_the_named_fields(tmp_path: Path) -> None:
    with Store.for_output(tmp_path) as store:
        store.save(_record())
        updated = store.update("t1", status="running", remote_id="42")
        assert updated.status == "running" and updated.params == {"seed": 1}
        assert store.get("t1") == updated
        with pytest.raises(StateError, match="has no task nope"):
            store.update("nope", status="failed")


def test_params_and_overrides_written_anew_reach_the_disk(tmp_path: Path) -> None:
    first = ({"nodeId": "6", "fieldName": "text", "fieldValue": "a cat"},)
    then = ({"nodeId": "6", "fieldName": "text", "fieldValue": "a dog"},)
    with Store.for_output(tmp_path) as store:
        store.save(_record(node_info_list=first))
        store.update("t1", status="running")  # the same params: their text is kept
        store.update("t1", params={"seed": 2}, node_info_list=then)
        store.update("t1", status="succeeded")
    with Store.for_output(tmp_path) as store:
        record = store.get("t1")
        assert record is not None and record.status == "succeeded"
        assert record.params == {"seed": 2} and record.node_info_list == then
        store.forget(["t1"])
        store.save(_record(params={"seed": 3}))
    with Store.for_output(tmp_path) as store:
        again = store.get("t1")
        assert again is not None and again.params == {"seed": 3}


def test_every_remote_id_is_kept_even_after_a_retry_replaces_it(tmp_path: Path) -> None:
    with Store.for_output(tmp_path) as store:
        store.save(_record(remote_id="1"))
        store.update("t1", remote_id="2")
        assert store.remote_ids() == {"1": "t1", "2": "t1"}


def test_uploads_are_remembered_per_server(tmp_path: Path) -> None:
    with Store.for_output(tmp_path) as store:
        store.remember_upload("http://a", "f" * 64, "api/fff.png")
    with Store.for_output(tmp_path) as store:
        assert store.upload_name("http://a", "f" * 64) == "api/fff.png"
        assert store.upload_name("http://b", "f" * 64) is None


def test_the_store_is_safe_to_use_from_several_threads(tmp_path: Path) -> None:
    with Store.for_output(tmp_path) as store:

        def work(n: int) -> None:
            for i in range(20):
                store.remember_upload("s", f"{n}-{i}", f"name-{n}-{i}")

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert store.upload_name("s", "3-19") == "name-3-19"


def test_an_unwritable_folder_is_a_state_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StateError) as caught:
        Store.for_output(blocker)
    assert str(caught.value) == (
        f"{blocker} is a file, not a folder; move it aside (mv {blocker} {blocker}.bak) and "
        "run again"
    )
    assert caught.value.exit_code == 2


def test_the_run_lock_excludes_a_second_holder(tmp_path: Path) -> None:
    code = (
        "import sys, pathlib\n"
        "from rhflow.record.lock import RunLock\n"
        "from rhflow.errors import StateError\n"
        "try:\n"
        "    RunLock(pathlib.Path(sys.argv[1])).acquire()\n"
        "except StateError as e:\n"
        "    print(e); sys.exit(3)\n"
    )
    with RunLock(tmp_path):
        held = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True
        )
    assert held.returncode == 3
    assert "another rhflow run (pid " in held.stdout and "different --out" in held.stdout
    free = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True)
    assert free.returncode == 0


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path: Path) -> None:
    code = (
        "import os, sys, pathlib\n"
        "from rhflow.record.lock import RunLock\n"
        "RunLock(pathlib.Path(sys.argv[1])).acquire()\n"
        "os.kill(os.getpid(), 9)\n"
    )
    killed = subprocess.run([sys.executable, "-c", code, str(tmp_path)])
    assert killed.returncode == -9
    assert (tmp_path / ".rhflow" / "lock").read_text().startswith("pid ")
    with RunLock(tmp_path):
        pass

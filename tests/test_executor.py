"""The executor end to end against the emulator: sweeps, chains, inputs, failures, faults."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests

from rhflow.api.client import Client
from rhflow.emulator import Emulator
from rhflow.errors import ConfigError, UsageError
from rhflow.execute.runner import RunResult, run_pipeline
from rhflow.execute.scheduling import Backoff, PollPolicy
from rhflow.execute.watching import PROGRESS_EVERY

T2I = "1904136902449209346"
I2I = "1904136902449209347"
SCHEMA = json.loads((Path(__file__).parent.parent / "schemas" / "manifest.schema.json").read_text())
FAST = {
    "api_backoff": Backoff(base=0.02, cap=0.1),
    "busy_backoff": Backoff(base=0.05, cap=0.2),
    "retry_backoff": Backoff(base=0.02, cap=0.1),
}
QUICK_POLL = PollPolicy(first=0.1, factor=1.5, cap=0.4)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative ``output`` folders resolve against the working directory."""
    monkeypatch.chdir(tmp_path)


def sweep_yaml(
    seeds: int = 3, *, retries: int = 0, timeout: float | None = None, concurrency: int = 3
) -> str:
    extra = f"\n    timeout: {timeout}" if timeout else ""
    return f"""
version: 1
name: sweep
output: out
concurrency: {concurrency}
steps:
  gen:
    workflow: "{T2I}"
    matrix:
      seed: {{range: [1, {seeds + 1}]}}
    nodes:
      "6": {{text: "a cat"}}
      "3": {{seed: "{{{{ seed }}}}"}}
      "5": {{width: 64, height: 64}}
    outputs: "cat-{{{{ seed }}}}-{{{{ index }}}}.{{{{ ext }}}}"
    retries: {retries}{extra}
"""


def write(tmp_path: Path, text: str, name: str = "pipeline.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def run(
    emu: Emulator, path: Path, key: str, events: list[dict[str, Any]] | None = None, **kw: Any
) -> RunResult:
    class Collect:
        def emit(self, event: str, **fields: Any) -> None:
            if events is not None:
                events.append({"event": event, **fields})

        def close(self) -> None:
            return None

    kw.setdefault("poll", QUICK_POLL)
    kw.setdefault("execute_options", FAST)
    with Client(key, emu.url) as client:
        return run_pipeline(path, client=client, reporter=Collect(), **kw)


def faults(emu: Emulator, **counts: int) -> None:
    requests.post(f"{emu.url}/emulator/faults", json=counts, timeout=5).raise_for_status()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def output_files(result: RunResult) -> list[Path]:
    base = result.manifest_path.parent
    return [base / o.path for t in result.manifest.tasks for o in t.outputs if o.path]


def test_a_sweep_downloads_every_output_and_records_it(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator(seed=3, queue_seconds=0)  # counts requests: no polls while queued
    result = run(emu, write(tmp_path, sweep_yaml(4)), api_key)
    manifest = result.manifest
    assert manifest.status == "succeeded" and manifest.counts["succeeded"] == 4
    assert sorted(o.path for t in manifest.tasks for o in t.outputs) == [
        f"cat-{n}-0.png" for n in range(1, 5)
    ]
    for task in manifest.tasks:
        assert task.attempts == 1 and task.task_id and task.status == "succeeded"
        assert {"nodeId": "3", "fieldName": "seed", "fieldValue": task.params["seed"]} in (
            task.node_info_list or []
        )
        for output in task.outputs:
            path = tmp_path / "out" / str(output.path)
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert sha(path) == output.sha256 and path.stat().st_size == output.bytes
    data = json.loads(result.manifest_path.read_text())
    jsonschema.validate(data, SCHEMA)
    stats = emu.stats()
    assert stats["tasks"]["created"] == 4 and stats["tasks"]["duplicates"] == 0
    # With the WebSocket: one create and one confirming outputs call per task.
    assert stats["requests"]["/task/openapi/create"] == 4
    assert stats["requests"]["/task/openapi/outputs"] <= 4 * 2


def test_polling_without_a_websocket_keeps_requests_low(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator(websocket=False, task_seconds=(0.3, 0.3), queue_seconds=0)
    result = run(emu, write(tmp_path, sweep_yaml(3)), api_key)
    assert result.manifest.status == "succeeded"
    outputs_calls = emu.stats()["requests"]["/task/openapi/outputs"]
    assert outputs_calls <= 3 * 4  # a 0.3 s task polled from 0.1 s, growing


def test_a_two_step_chain_feeds_upstream_outputs_uploaded_once(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator()
    text = f"""
version: 1
name: chain
output: out
concurrency: 4
steps:
  draft:
    workflow: "{T2I}"
    matrix: {{subject: [cat, dog]}}
    nodes:
      "6": {{text: "a {{{{ subject }}}}"}}
      "5": {{width: 64, height: 64}}
  refine:
    needs: draft
    workflow: "{I2I}"
    matrix: {{denoise: [0.3, 0.6]}}
    nodes:
      "2": {{image: "{{{{ needs.draft.outputs[0] }}}}"}}
      "3": {{denoise: "{{{{ denoise }}}}"}}
    outputs: "refine/{{{{ subject }}}}-{{{{ denoise }}}}.{{{{ ext }}}}"
"""
    result = run(emu, write(tmp_path, text), api_key)
    manifest = result.manifest
    assert manifest.status == "succeeded", manifest.errors
    refined = [t for t in manifest.tasks if t.step == "refine"]
    assert len(refined) == 4
    for task in refined:
        image = next(e for e in task.node_info_list or [] if e["nodeId"] == "2")
        assert str(image["fieldValue"]).startswith("api/")
        assert task.needs["draft"] in {t.id for t in manifest.tasks if t.step == "draft"}
    assert sorted(str(o.path) for t in refined for o in t.outputs) == [
        "refine/cat-0.3.png",
        "refine/cat-0.6.png",
        "refine/dog-0.3.png",
        "refine/dog-0.6.png",
    ]
    assert emu.stats()["uploads"] == 2  # each draft image once, though two tasks use it


def test_a_local_file_input_is_uploaded_once_across_runs(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    from PIL import Image

    Image.new("RGB", (64, 64), (200, 10, 10)).save(tmp_path / "face.png")
    text = f"""
version: 1
name: restyle
output: out
steps:
  restyle:
    workflow: "{I2I}"
    matrix: {{seed: [1, 2, 3]}}
    nodes:
      "2": {{image: {{file: face.png}}}}
      "3": {{seed: "{{{{ seed }}}}"}}
"""
    emu = make_emulator()
    path = write(tmp_path, text)
    first = run(emu, path, api_key)
    assert first.manifest.status == "succeeded"
    assert emu.stats()["uploads"] == 1
    again = run(emu, path, api_key, force=True)
    assert again.manifest.status == "succeeded"
    assert emu.stats()["uploads"] == 1  # remembered in the state store
    assert emu.stats()["tasks"]["created"] == 6


def test_a_failed_task_is_retried_and_its_reason_kept(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator()
    faults(emu, fail_tasks=1)
    events: list[dict[str, Any]] = []
    result = run(emu, write(tmp_path, sweep_yaml(1, retries=1)), api_key, events)
    (task,) = result.manifest.tasks
    assert task.status == "succeeded" and task.attempts == 2
    retry = next(e for e in events if e["event"] == "task_retry")
    assert "OutOfMemoryError" in retry["reason"]


def test_a_task_that_keeps_failing_fails_the_run_with_its_reason(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator()
    faults(emu, fail_tasks=2)
    result = run(emu, write(tmp_path, sweep_yaml(1, retries=1)), api_key)
    (task,) = result.manifest.tasks
    assert result.manifest.status == "failed" and task.status == "failed"
    assert task.attempts == 2
    assert task.failure and "raised torch.OutOfMemoryError" in task.failure
    assert task.failure_detail and task.failure_detail["kind"] == "failed"
    jsonschema.validate(json.loads(result.manifest_path.read_text()), SCHEMA)


def test_busy_answers_wait_for_a_slot_without_counting_as_retries(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator(concurrency=1)
    events: list[dict[str, Any]] = []
    result = run(emu, write(tmp_path, sweep_yaml(4, concurrency=3)), api_key, events)
    assert result.manifest.status == "succeeded"
    assert all(t.attempts == 1 for t in result.manifest.tasks)
    assert any(e["event"] == "task_busy" for e in events)
    stats = emu.stats()
    assert stats["peak_running"] == 1 and stats["tasks"]["created"] == 4


def test_transient_errors_are_retried_without_duplicate_tasks(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator()
    faults(emu, http_500=2, drop=2, code_1011=2)
    result = run(emu, write(tmp_path, sweep_yaml(3)), api_key)
    assert result.manifest.status == "succeeded"
    stats = emu.stats()
    assert stats["tasks"]["created"] == 3 and stats["tasks"]["duplicates"] == 0
    assert stats["faults"]["injected"] == {"http_500": 2, "drop": 2, "code_1011": 2}


def test_a_failed_download_is_retried_without_running_the_task_again(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator()
    faults(emu, download_500=2, download_truncate=1)
    events: list[dict[str, Any]] = []
    result = run(emu, write(tmp_path, sweep_yaml(2)), api_key, events)
    assert result.manifest.status == "succeeded"
    assert emu.stats()["tasks"]["created"] == 2
    assert sum(e["event"] == "download_retry" for e in events) == 3
    for path in output_files(result):
        assert path.read_bytes()[:4] == b"\x89PNG"
    assert not list((tmp_path / "out" / ".rhflow" / "partial").iterdir())


def test_a_timeout_cancels_the_remote_task(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator(task_seconds=(5.0, 5.0))
    result = run(emu, write(tmp_path, sweep_yaml(1, timeout=0.3)), api_key)
    (task,) = result.manifest.tasks
    assert task.status == "failed" and task.failure_detail
    assert task.failure_detail["kind"] == "timeout"
    assert task.failure == (
        f"no result within the step's timeout of 0.3 s; remote task {task.task_id} cancelled"
    )
    assert emu.stats()["tasks"]["cancelled"] == 1


def test_fail_fast_stops_and_cancels_the_rest(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    # seed 2: the first task created runs 0.21 s (and fails), the second 1.5 s
    emu = make_emulator(task_seconds=(0.1, 2.0), seed=2)
    faults(emu, fail_tasks=1)
    result = run(emu, write(tmp_path, sweep_yaml(4, concurrency=2)), api_key, fail_fast=True)
    manifest = result.manifest
    assert manifest.status == "failed"
    assert manifest.counts == {
        "total": 4,
        "succeeded": 0,
        "failed": 1,
        "cancelled": 1,
        "pending": 2,
        "running": 0,
    }
    cancelled = next(t for t in manifest.tasks if t.status == "cancelled")
    assert cancelled.failure == (
        f"stopped by --fail-fast after a failure; remote task {cancelled.task_id} cancelled"
    )
    stats = emu.stats()["tasks"]
    assert stats["created"] == 2 and stats["cancelled"] == 1


def test_a_bad_key_stops_the_run_with_the_api_message(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emu = make_emulator(api_keys=("the-right-key-0123456789abcdef0",))
    with pytest.raises(UsageError, match="RH_API_KEY") as info:
        run(emu, write(tmp_path, sweep_yaml(3)), "a-wrong-key-0123456789abcdef012")
    assert info.value.exit_code == 2 and "nothing was submitted" in str(info.value)
    assert emu.stats()["tasks"]["created"] == 0
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_downstream_tasks_of_a_failed_task_are_cancelled(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator()
    faults(emu, fail_tasks=1)
    text = f"""
version: 1
name: chain
output: out
concurrency: 1
steps:
  draft:
    workflow: "{T2I}"
    retries: 0
    nodes: {{"5": {{width: 64, height: 64}}}}
  refine:
    needs: draft
    workflow: "{I2I}"
    nodes: {{"2": {{image: "{{{{ needs.draft.outputs[0] }}}}"}}}}
"""
    result = run(emu, write(tmp_path, text), api_key)
    by_step = {t.step: t for t in result.manifest.tasks}
    assert by_step["draft"].status == "failed"
    assert by_step["refine"].status == "cancelled"
    assert by_step["refine"].failure == f"upstream task {by_step['draft'].id[:10]} failed"
    assert emu.stats()["tasks"]["created"] == 1


def test_an_invalid_pipeline_sends_nothing(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator()
    path = write(tmp_path, "version: 1\nname: x\nsteps: {gen: {matrix: 3}}\n")
    with pytest.raises(ConfigError):
        run(emu, path, api_key)
    assert emu.stats()["requests"] == {}
    assert not (tmp_path / "out").exists()


def test_the_api_key_is_written_nowhere(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator()
    faults(emu, fail_tasks=1, http_500=1)
    result = run(emu, write(tmp_path, sweep_yaml(2, retries=1)), api_key)
    assert result.manifest.status == "succeeded"
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert any(p.name == "state.db" for p in written)
    for path in written:
        assert api_key.encode() not in path.read_bytes(), path


def test_random_failures_are_retried_until_every_task_succeeds(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator(fail_rate=0.4, seed=11)
    result = run(emu, write(tmp_path, sweep_yaml(6, retries=6, concurrency=3)), api_key)
    manifest = result.manifest
    assert manifest.status == "succeeded"
    stats = emu.stats()["tasks"]
    assert stats["failed"] >= 1  # the seed makes some of them fail
    assert stats["created"] == 6 + stats["failed"] == sum(t.attempts for t in manifest.tasks)


def test_while_following_a_websocket_outputs_is_still_checked_now_and_then(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator(task_seconds=(0.6, 0.6), queue_seconds=0)
    options = {**FAST, "ws_check": 0.1}
    result = run(emu, write(tmp_path, sweep_yaml(1)), api_key, execute_options=options)
    assert result.manifest.status == "succeeded"
    stats = emu.stats()
    assert stats["websocket_connections"] == 1
    assert 3 <= stats["requests"]["/task/openapi/outputs"] <= 8


def test_a_downstream_task_starts_as_soon_as_its_upstream_is_done(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator()
    text = f"""
version: 1
name: chain
output: out
concurrency: 1
steps:
  draft:
    workflow: "{T2I}"
    matrix: {{subject: [cat, dog]}}
    nodes: {{"6": {{text: "a {{{{ subject }}}}"}}}}
  refine:
    needs: draft
    workflow: "{I2I}"
    nodes: {{"2": {{image: "{{{{ needs.draft.outputs[0] }}}}"}}}}
"""
    events: list[dict[str, Any]] = []
    result = run(emu, write(tmp_path, text), api_key, events)
    assert result.manifest.status == "succeeded"
    params = {t.id: (t.step, t.params["subject"]) for t in result.manifest.tasks}
    order = [params[e["task"]] for e in events if e["event"] == "task_submitted"]
    assert order == [("draft", "cat"), ("refine", "cat"), ("draft", "dog"), ("refine", "dog")]


def test_a_success_without_outputs_is_a_failure_that_says_why(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator()
    faults(emu, no_outputs=1)
    result = run(emu, write(tmp_path, sweep_yaml(1, retries=2)), api_key)
    (task,) = result.manifest.tasks
    assert task.status == "failed" and task.attempts == 1
    assert task.failure == (
        "the task succeeded without any output file; check that the workflow has an output "
        "node (SaveImage...)"
    )


@pytest.mark.parametrize("quick", ["", '\n    quick_create_code: "1"'])
def test_ai_apps_run_and_their_outputs_are_kept(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path, quick: str
) -> None:
    emu = make_emulator()
    text = f"""
version: 1
name: apps
output: out
steps:
  caption:
    app: "1877265245566922753"{quick}
    matrix: {{topic: [sea, sky]}}
    nodes:
      "6": {{text: "a picture of the {{{{ topic }}}}"}}
      "5": {{width: 64, height: 64}}
    outputs: "{{{{ topic }}}}-{{{{ index }}}}.{{{{ ext }}}}"
"""
    result = run(emu, write(tmp_path, text), api_key)
    assert result.manifest.status == "succeeded", [t.failure for t in result.manifest.tasks]
    path = "/task/openapi/quick-ai-app/run" if quick else "/task/openapi/ai-app/run"
    assert emu.stats()["requests"][path] == 2
    for file in output_files(result):
        assert file.is_file() and file.stat().st_size > 0


def test_every_output_of_a_multi_output_or_video_task_is_kept(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator()
    text = """
version: 1
name: kinds
output: out
steps:
  two:
    workflow: "1904136902449209348"
    outputs: "two-{{ index }}-{{ node_id }}.{{ ext }}"
  video:
    workflow: "1904136902449209349"
    outputs: "video-{{ index }}.{{ ext }}"
"""
    result = run(emu, write(tmp_path, text), api_key)
    assert result.manifest.status == "succeeded", [t.failure for t in result.manifest.tasks]
    by_step = {t.step: t for t in result.manifest.tasks}
    assert len(by_step["two"].outputs) == 2
    assert [o.index for o in by_step["two"].outputs] == [0, 1]
    for output in (*by_step["two"].outputs, *by_step["video"].outputs):
        assert output.path and output.path.startswith(("two-", "video-"))
        path = tmp_path / "out" / output.path
        assert sha(path) == output.sha256 and path.suffix == f".{output.file_type}"


def test_an_empty_balance_stops_the_run(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator(coins=0, account="consumer")
    result = run(emu, write(tmp_path, sweep_yaml(3, concurrency=1)), api_key)
    manifest = result.manifest
    assert manifest.status == "failed" and len(manifest.errors) == 1
    assert "top up" in manifest.errors[0]
    assert manifest.counts["failed"] == 1 and manifest.counts["pending"] == 2
    assert emu.stats()["requests"]["/task/openapi/create"] == 1


def test_a_queued_task_is_polled_then_followed_once_its_websocket_appears(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    emu = make_emulator(queue_seconds=(0.3, 0.3), task_seconds=(0.5, 0.5))
    events: list[dict[str, Any]] = []
    result = run(emu, write(tmp_path, sweep_yaml(2)), api_key, events)
    assert result.manifest.status == "succeeded"
    assert {e["status"] for e in events if e["event"] == "task_submitted"} == {"queued"}
    assert any(e["event"] == "task_progress" for e in events)
    stats = emu.stats()
    assert stats["websocket_connections"] == 2


def test_progress_events_are_spaced_and_left_out_when_nothing_shows_them(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    """The emulator sends about 30 frames per task; a reporter gets at most one progress event
    per task every PROGRESS_EVERY seconds (and each node's last step), none when it shows
    none, while the manifest still records how far each task got."""
    emu = make_emulator(task_seconds=(1.0, 1.0), queue_seconds=0)
    shown: list[dict[str, Any]] = []
    result = run(emu, write(tmp_path, sweep_yaml(2)), api_key, shown)
    assert result.manifest.status == "succeeded"
    for task in result.manifest.tasks:
        mine = [e for e in shown if e.get("task") == task.id]
        progress = [e for e in mine if e["event"] in ("task_progress", "task_node")]
        assert 1 <= len(progress) <= 1.0 / PROGRESS_EVERY + 3, progress
        assert any(e["event"] == "task_progress" and e["value"] == e["max"] for e in mine)

    class Unshown:
        shows_progress = False

        def __init__(self) -> None:
            self.events: list[str] = []

        def emit(self, event: str, **fields: Any) -> None:
            self.events.append(event)

        def close(self) -> None:
            return None

    quiet = Unshown()
    again = write(tmp_path, sweep_yaml(2).replace("a cat", "a dog"), "other.yaml")
    with Client(api_key, emu.url) as client:
        result = run_pipeline(
            again,
            client=client,
            reporter=quiet,
            poll=QUICK_POLL,
            execute_options=FAST,
            out=tmp_path / "quiet",
        )
    assert result.manifest.status == "succeeded"
    assert "task_succeeded" in quiet.events
    assert not {"task_progress", "task_node"} & set(quiet.events)
    assert all(task.progress == 1.0 for task in result.manifest.tasks)


def test_a_local_workflow_is_sent_with_each_tasks_own_values_written_in(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    # Sources disagree on whether RunningHub applies nodeInfoList on top of `workflow`; the
    # graph sent must carry the task's values, with nodeInfoList still sent beside it.
    emu = make_emulator()
    workflows = Path(__file__).parent.parent / "pipelines" / "workflows"
    shutil.copy(workflows / "t2i.json", tmp_path / "t2i.json")
    text = sweep_yaml(2).replace(f'"{T2I}"', f'"{T2I}"\n    workflow_file: t2i.json')
    sent: list[requests.PreparedRequest] = []
    session = requests.Session()
    session.hooks["response"].append(lambda resp, *args, **kwargs: sent.append(resp.request))
    with Client(api_key, emu.url, session=session) as client:
        result = run_pipeline(
            write(tmp_path, text), client=client, poll=QUICK_POLL, execute_options=FAST
        )
    assert result.manifest.status == "succeeded"
    creates = [json.loads(r.body or b"") for r in sent if r.path_url == "/task/openapi/create"]
    seeds = []
    for body in creates:
        graph = json.loads(body["workflow"])
        assert graph["6"]["inputs"]["text"] == "a cat"
        assert graph["5"]["inputs"]["width"] == graph["5"]["inputs"]["height"] == 64
        seed = graph["3"]["inputs"]["seed"]
        seeds.append(seed)
        assert [e for e in body["nodeInfoList"] if e["fieldName"] == "seed"] == [
            {"nodeId": "3", "fieldName": "seed", "fieldValue": seed}
        ]
    assert sorted(seeds) == [1, 2]

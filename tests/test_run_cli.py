"""``rhflow run``, ``rhflow status`` and ``rhflow cancel`` on the command line: exit codes,
JSON events, summaries, manifests elsewhere and shards."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
import requests

from rhflow.cli import main
from rhflow.emulator import Emulator

T2I = "1904136902449209346"
SCHEMA = json.loads((Path(__file__).parent.parent / "schemas" / "manifest.schema.json").read_text())


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def pipeline(tmp_path: Path, seeds: int = 2, subjects: str = "[cat]") -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(f"""
version: 1
name: cats
output: out
concurrency: 4
steps:
  gen:
    workflow: "{T2I}"
    retries: 0
    matrix:
      subject: {subjects}
      seed: {{range: [1, {seeds + 1}]}}
    nodes:
      "6": {{text: "a {{{{ subject }}}}"}}
      "3": {{seed: "{{{{ seed }}}}"}}
      "5": {{width: 64, height: 64}}
    outputs: "{{{{ subject }}}}-{{{{ seed }}}}.{{{{ ext }}}}"
""")
    return path


def run_cli(
    args: list[str], emu: Emulator | None, key: str | None, monkeypatch: pytest.MonkeyPatch
) -> int:
    if key:
        monkeypatch.setenv("RH_API_KEY", key)
    extra = ["--base-url", emu.url] if emu else []
    return main(["run", *args, *extra])


def test_json_events_one_per_line_and_exit_0(
    make_emulator: Callable[..., Emulator],
    api_key: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emu = make_emulator()
    code = run_cli([str(pipeline(tmp_path)), "--json"], emu, api_key, monkeypatch)
    out, err = capsys.readouterr()
    assert code == 0
    events = [json.loads(line) for line in out.splitlines()]
    names = [e["event"] for e in events]
    assert names[0] == "run_started" and names[-1] == "run_finished"
    assert names.count("task_submitted") == 2 and names.count("task_succeeded") == 2
    assert names.count("download") == 2
    submitted = [e for e in events if e["event"] == "task_submitted"]
    assert all(e["task_id"].isdigit() and e["step"] == "gen" for e in submitted)
    assert events[-1]["status"] == "succeeded"
    assert events[-1]["counts"]["succeeded"] == 2
    assert events[-1]["server"] == {"origin": emu.url, "emulated": True}
    assert api_key not in out + err


def test_a_failed_task_exits_1_and_the_summary_says_which_and_why(
    make_emulator: Callable[..., Emulator],
    api_key: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emu = make_emulator(concurrency=1)
    requests.post(f"{emu.url}/emulator/faults", json={"fail_tasks": 1}, timeout=5)
    code = run_cli(
        [str(pipeline(tmp_path)), "--quiet", "--concurrency", "1"], emu, api_key, monkeypatch
    )
    out, err = capsys.readouterr()
    assert code == 1
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    failed = next(t for t in manifest["tasks"] if t["status"] == "failed")
    lines = out.splitlines()
    assert lines[0].startswith("cats: failed: 1 succeeded, 1 failed (2 tasks) in ")
    assert lines[1] == (
        f"  failed gen/{failed['id'][:10]} [subject=cat, seed=1] (task {failed['task_id']}): "
        f"{failed['failure']}"
    )
    assert "OutOfMemoryError" in lines[1]
    assert lines[2] == (  # a log of this run must not read as RunningHub's work
        f"server: {emu.url}, an emulator: the outputs are placeholders and nothing was paid"
    )
    assert lines[3] == f"manifest: {tmp_path / 'out' / 'manifest.json'}"
    assert err == ""


def test_an_invalid_pipeline_exits_2_before_anything_is_sent(
    make_emulator: Callable[..., Emulator],
    api_key: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emu = make_emulator()
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: x\nsteps: {}\n")
    assert run_cli([str(bad)], emu, api_key, monkeypatch) == 2
    assert capsys.readouterr().err.startswith("Error: ")
    assert emu.stats()["requests"] == {}


def test_no_key_exits_2_and_says_both_ways_forward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli([str(pipeline(tmp_path))], None, None, monkeypatch) == 2
    assert capsys.readouterr().err == (
        "Error: no RunningHub API key: set RH_API_KEY or pass --api-key "
        "(or use --emulator to try without a key)\n"
    )


def test_a_bad_shard_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_cli([str(pipeline(tmp_path)), "--shard", "3/2"], None, "k" * 32, monkeypatch)
    assert code == 2
    assert capsys.readouterr().err == (
        "Error: --shard '3/2' is not valid: write I/N with 1 <= I <= N, e.g. --shard 2/4\n"
    )


def test_a_concurrency_below_1_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_cli([str(pipeline(tmp_path)), "--concurrency", "0"], None, "k" * 32, monkeypatch)
    assert code == 2
    assert capsys.readouterr().err == "Error: --concurrency must be at least 1, got 0\n"


def test_emulator_flag_runs_without_a_key_and_leaves_images_and_a_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli([str(pipeline(tmp_path, seeds=1)), "--emulator"], None, None, monkeypatch) == 0
    out, err = capsys.readouterr()
    assert out.startswith("cats: succeeded: 1 succeeded, 0 failed (1 task) in ")
    assert "gen/" in err and "succeeded, 1 file(s)" in err  # plain progress lines
    assert (tmp_path / "out" / "cat-1.png").read_bytes()[:4] == b"\x89PNG"
    jsonschema.validate(json.loads((tmp_path / "out" / "manifest.json").read_text()), SCHEMA)


def test_a_manifest_elsewhere_lists_paths_relative_to_itself(
    make_emulator: Callable[..., Emulator],
    api_key: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    emu = make_emulator()
    target = tmp_path / "records" / "run.json"
    args = [str(pipeline(tmp_path, seeds=1)), "-q", "--out", "images", "--manifest", str(target)]
    assert run_cli(args, emu, api_key, monkeypatch) == 0
    data = json.loads(target.read_text())
    (output,) = data["tasks"][0]["outputs"]
    assert output["path"] == "../images/cat-1.png"
    assert (target.parent / output["path"]).is_file()


def test_shards_together_run_the_plan_exactly_once(
    make_emulator: Callable[..., Emulator],
    api_key: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rhflow.execute.runner import plan_graph

    emu = make_emulator()
    path = pipeline(tmp_path, seeds=3, subjects="[cat, dog]")
    planned = {t.id for t in plan_graph(path).tasks}
    seen: list[str] = []
    for index in (1, 2, 3):
        args = [str(path), "-q", "--shard", f"{index}/3", "--out", f"shard{index}"]
        assert run_cli(args, emu, api_key, monkeypatch) == 0
        data = json.loads((tmp_path / f"shard{index}" / "manifest.json").read_text())
        assert data["shard"] == f"{index}/3"
        seen += [t["id"] for t in data["tasks"]]
    assert sorted(seen) == sorted(planned)
    assert emu.stats()["tasks"]["created"] == len(planned) == 6


def test_status_summarises_a_finished_run(
    make_emulator: Callable[..., Emulator],
    api_key: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emu = make_emulator()
    requests.post(f"{emu.url}/emulator/faults", json={"fail_tasks": 1}, timeout=5)
    run_cli([str(pipeline(tmp_path)), "-q", "--concurrency", "1"], emu, api_key, monkeypatch)
    capsys.readouterr()
    assert main(["status", "out", "--json"]) == 1  # a task failed
    summary = json.loads(capsys.readouterr().out)
    assert summary["pipeline"] == "cats" and summary["run_status"] == "failed"
    assert summary["server"] == {"origin": emu.url, "emulated": True}
    assert summary["counts"]["succeeded"] == 1 and summary["counts"]["failed"] == 1
    assert summary["running"] == [] and "OutOfMemoryError" in summary["failed"][0]["reason"]
    assert main(["status", "out"]) == 1
    text = capsys.readouterr().out.splitlines()
    assert text[0].startswith("cats in out: failed (finished ")
    assert text[1] == f"server: {emu.url} (an emulator)"
    assert text[2] == "tasks: 2 total, 1 succeeded, 1 failed"
    assert main(["cancel", "out"]) == 0
    assert capsys.readouterr().out == "nothing of the run in out is running remotely\n"


def test_status_checks_the_files_and_calls_a_run_with_missing_or_changed_outputs_unfinished(
    make_emulator: Callable[..., Emulator],
    api_key: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The records say succeeded; status hashes the files before it says so too."""
    emu = make_emulator()
    assert run_cli([str(pipeline(tmp_path, seeds=3)), "-q"], emu, api_key, monkeypatch) == 0
    assert main(["status", "out"]) == 0
    capsys.readouterr()
    files = sorted((tmp_path / "out").rglob("*.png"))
    assert len(files) == 3
    files[0].unlink()
    files[1].write_bytes(files[1].read_bytes() + b"edited")
    assert main(["status", "out", "--json"]) == 3
    summary = json.loads(capsys.readouterr().out)
    assert summary["counts"]["succeeded"] == 3
    assert [(d["problem"], d["path"]) for d in summary["damaged"]] == [
        ("missing", str(files[0])),
        ("changed", str(files[1])),
    ]
    assert main(["status", "out"]) == 3
    text = capsys.readouterr().out
    assert "damaged: 2 output file(s) of succeeded tasks are missing or changed" in text
    assert run_cli([str(tmp_path / "p.yaml"), "-q"], emu, api_key, monkeypatch) == 0
    assert emu.stats()["tasks"]["created"] == 3  # fetched again from the tasks it has
    assert main(["status", "out"]) == 0


def test_status_of_a_folder_without_a_run_says_what_to_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", str(tmp_path)]) == 2  # not a run folder: a usage error, not a failed run
    assert capsys.readouterr().err == (
        f"Error: {tmp_path} holds no rhflow run (no .rhflow/state.db); pass the output folder "
        "of a run: the pipeline's `output`, or the --out given to rhflow run\n"
    )


def test_overrides_are_checked_against_the_servers_workflow_before_anything_is_sent(
    tmp_path: Path,
    make_emulator: Callable[..., Emulator],
    api_key: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = pipeline(tmp_path)
    path.write_text(path.read_text().replace('"3": {seed:', '"3": {seeed:'))
    emu = make_emulator()
    assert run_cli([str(path)], emu, api_key, monkeypatch) == 2
    err = capsys.readouterr().err
    assert f"{path}:15:13: steps.gen.nodes.3.seeed: node 3 (KSampler) has no field 'seeed'" in err
    stats = emu.stats()
    assert stats["tasks"]["created"] == 0
    assert stats["requests"].get("/api/openapi/getJsonApiFormat") == 1
    assert not (tmp_path / "out" / "manifest.json").exists()

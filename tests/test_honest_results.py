"""A run never counts work that was not done here: results belong to a server, an unreachable
server is said at once, and the key is masked without mangling messages."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from rhflow.api.client import Client
from rhflow.cli import main
from rhflow.emulator import Emulator
from rhflow.errors import ApiError, UnreachableError, redact
from rhflow.execute.runner import plan_graph, run_pipeline
from rhflow.record.store import Store, TaskRecord
from tests.test_run_cli import T2I, pipeline

EmulatorFactory = Callable[..., Emulator]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RH_BASE_URL", raising=False)


def run(path: Path, *args: str) -> int:
    return main(["run", str(path), "-q", *args])


def test_results_of_another_server_are_refused_before_anything_is_sent(
    make_emulator: EmulatorFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RH_API_KEY", "k" * 32)
    first, second = make_emulator(), make_emulator()
    path = pipeline(tmp_path)
    assert run(path, "--base-url", first.url) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["server"]["emulated"] is True
    assert manifest["server"]["origin"] == first.url
    assert {t["server"] for t in manifest["tasks"]} == {first.url}
    capsys.readouterr()

    assert run(path, "--base-url", second.url) == 2
    err = capsys.readouterr().err
    assert first.url in err and second.url in err and "--force" in err and "--out" in err
    assert sum(second.stats()["requests"].values()) == 0  # nothing at all was sent

    assert run(path, "--base-url", second.url, "--force") == 0
    assert second.stats()["tasks"]["created"] == 2
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert {t["server"] for t in manifest["tasks"]} == {second.url}


def test_the_builtin_emulator_counts_as_one_server_across_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = pipeline(tmp_path, seeds=1)
    assert run(path, "--emulator") == 0
    assert run(path, "--emulator") == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["server"] == {"origin": "emulator://built-in", "emulated": True}
    assert all(t["emulated"] for t in manifest["tasks"])


@pytest.mark.parametrize(
    ("url", "cause"),
    [
        ("http://127.0.0.1:9", "Connection refused"),
        ("http://no-such-host.invalid", "could not be resolved"),
    ],
)
def test_an_unreachable_server_ends_the_run_at_once_with_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    url: str,
    cause: str,
) -> None:
    monkeypatch.setenv("RH_API_KEY", "k" * 32)
    code = run(pipeline(tmp_path, seeds=6), "--base-url", url)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "cannot reach" in err and cause in err  # no retry lines
    assert "RunningHub answered" not in err
    assert not (tmp_path / "out" / "manifest.json").exists()  # no task failures recorded


def test_a_drop_after_the_first_answer_is_a_transient_fault(
    make_emulator: EmulatorFactory,
) -> None:
    emu = make_emulator()
    with Client("k" * 32, emu.url) as client:
        client.account()
        emu.stop()
        with pytest.raises(ApiError) as info:
            client.account()
    assert not isinstance(info.value, UnreachableError) and info.value.retryable


def test_a_key_is_masked_wherever_it_occurs_and_a_short_key_not_in_free_text() -> None:
    key = "sk0123456789abcdef"
    assert redact(f"apiKey={key}, Bearer {key}.", key) == "apiKey=***, Bearer ***."
    assert redact(f"x{key}y", key) == "x***y"  # glued to other text it is still the key
    assert redact("Max retries exceeded", "x") == "Max retries exceeded"


def test_a_short_key_leaves_the_api_messages_readable(
    make_emulator: EmulatorFactory, tmp_path: Path
) -> None:
    emu = make_emulator(api_keys=("right-key-0123456789",))
    with Client("e", emu.url) as client, pytest.raises(ApiError) as info:
        client.account()
    assert str(info.value).startswith("RunningHub answered 802 APIKEY_UNAUTHORIZED")  # no "***"


# -- the output folder's rules ---------------------------------------------------------------


def styled(tmp_path: Path, name: str = "cats", outputs: str = "{{ seed }}.{{ ext }}") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"""
version: 1
name: {name}
output: out
vars: {{style: ink}}
steps:
  gen:
    workflow: "{T2I}"
    matrix: {{seed: [1, 2]}}
    nodes:
      "6": {{text: "a cat, {{{{ vars.style }}}}"}}
      "3": {{seed: "{{{{ seed }}}}"}}
      "5": {{width: 64, height: 64}}
    outputs: "{outputs}"
""")
    return path


def test_a_run_that_would_overwrite_other_tasks_files_stops_before_any_create(
    make_emulator: EmulatorFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RH_API_KEY", "k" * 32)
    emu = make_emulator()
    path = styled(tmp_path)
    assert run(path, "--base-url", emu.url) == 0
    before = (tmp_path / "out" / "1.png").read_bytes()
    capsys.readouterr()

    assert run(path, "--base-url", emu.url, "--set", "style=oil") == 2
    err = capsys.readouterr().err
    assert "1.png" in err and "node 6 text" in err and "--overwrite" in err and "outputs:" in err
    assert emu.stats()["tasks"]["created"] == 2  # nothing more was created
    assert (tmp_path / "out" / "1.png").read_bytes() == before

    assert run(path, "--base-url", emu.url, "--set", "style=oil", "--overwrite") == 0
    assert emu.stats()["tasks"]["created"] == 4


def test_a_folder_holding_another_pipelines_run_is_refused(
    make_emulator: EmulatorFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RH_API_KEY", "k" * 32)
    emu = make_emulator()
    assert run(styled(tmp_path, "cats"), "--base-url", emu.url) == 0
    dogs = styled(tmp_path, "dogs", outputs="dog-{{ seed }}.{{ ext }}")
    capsys.readouterr()
    assert run(dogs, "--base-url", emu.url) == 2
    err = capsys.readouterr().err
    assert "'cats'" in err and "'dogs'" in err and "--out" in err
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["pipeline"] == "cats"
    assert run(dogs, "--base-url", emu.url, "--overwrite") == 0
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["pipeline"] == "dogs"


def test_prune_lists_then_removes_the_files_of_tasks_that_left_the_plan(
    make_emulator: EmulatorFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RH_API_KEY", "k" * 32)
    emu = make_emulator()
    path = styled(tmp_path, outputs="{{ vars.style }}-{{ seed }}.{{ ext }}")
    assert run(path, "--base-url", emu.url) == 0
    capsys.readouterr()
    assert main(["run", str(path), "--json", "--base-url", emu.url, "--set", "style=oil",
                 "--prune"]) == 0  # fmt: skip
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    pruned = sorted(Path(e["path"]).name for e in events if e["event"] == "output_pruned")
    assert pruned == ["ink-1.png", "ink-2.png"]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["oil-1.png", "oil-2.png"]


def test_an_unknown_workflow_id_stops_the_run_before_any_create(
    make_emulator: EmulatorFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RH_API_KEY", "k" * 32)
    emu = make_emulator()
    path = tmp_path / "p.yaml"
    path.write_text("""
version: 1
output: out
steps:
  gen:
    workflow: "1999999999999999999"
    nodes: {"33": {seed: 1}}
""")
    assert run(path, "--base-url", emu.url) == 2
    err = capsys.readouterr().err
    assert "p.yaml:" in err and "steps.gen" in err and "1999999999999999999" in err
    assert "nothing was submitted" in err
    assert emu.stats()["tasks"]["created"] == 0


def test_force_leaves_a_task_live_on_another_server_with_a_note(
    make_emulator: EmulatorFactory, tmp_path: Path
) -> None:
    first, second = make_emulator(), make_emulator()
    path = styled(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    task = plan_graph(path).tasks[0]
    with Store.for_output(out) as store:  # as an interrupted --detach run on `first` left it
        store.save(TaskRecord(task.id, "gen", "running", remote_id="1234", server=first.url))
    with Client("k" * 32, second.url) as client:
        manifest = run_pipeline(path, client=client, force=True).manifest
    assert manifest.status == "succeeded"
    assert second.stats()["requests"].get("/task/openapi/cancel", 0) == 0  # not sent here
    entry = next(t for t in manifest.tasks if t.id == task.id)
    assert any("1234" in n and first.url in n and "rhflow cancel" in n for n in entry.notes)


# -- --emulator runs your own pipelines ------------------------------------------------------


def own_workflow(tmp_path: Path, *, with_file: bool = True) -> Path:
    """A pipeline on a workflow id the emulator has never heard of, with its own JSON."""
    from rhflow.emulator.workflows import BUILTIN_WORKFLOWS

    (tmp_path / "mine.json").write_text(json.dumps(BUILTIN_WORKFLOWS[T2I]))
    path = tmp_path / "mine.yaml"
    path.write_text(f"""
version: 1
name: mine
output: out
steps:
  gen:
    workflow: "777"
    {"workflow_file: mine.json" if with_file else ""}
    matrix: {{seed: [1, 2]}}
    nodes:
      "3": {{seed: "{{{{ seed }}}}"}}
      "5": {{width: 64, height: 64}}
""")
    return path


def test_emulator_serves_each_steps_workflow_file_under_its_id(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(own_workflow(tmp_path), "--emulator") == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [t["status"] for t in manifest["tasks"]] == ["succeeded", "succeeded"]
    assert all((tmp_path / "out" / t["outputs"][0]["path"]).is_file() for t in manifest["tasks"])


def test_emulator_names_the_fix_for_a_step_without_workflow_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(own_workflow(tmp_path, with_file=False), "--emulator") == 2
    err = capsys.readouterr().err
    assert "mine.yaml:7:5: steps.gen: workflow 777 is not known to the built-in emulator" in err
    assert "workflow_file:" in err and "rhflow emulator --workflows DIR" in err
    assert "nothing was submitted" in err
    assert not (tmp_path / "out").exists()


# -- what a run says: reused, coins, interrupts, machines ---------------------------------------


def test_every_run_says_what_it_reuses_and_what_this_run_cost(
    make_emulator: EmulatorFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RH_API_KEY", "k" * 32)
    emu = make_emulator(account="consumer", concurrency=50)  # a key that pays coins
    path = pipeline(tmp_path, seeds=2)
    assert main(["run", str(path), "--base-url", emu.url]) == 0
    first = capsys.readouterr()
    assert first.err.splitlines()[0] == "cats: 2 tasks: 0 reused, 2 to run, 4 at a time"
    assert "(2 tasks) in " in first.out and "; 2 coins this run, 2 coins in total" in first.out

    path = pipeline(tmp_path, seeds=3)  # one more seed: two tasks are done already
    assert main(["run", str(path), "--base-url", emu.url]) == 0
    second = capsys.readouterr()
    assert second.err.splitlines()[0] == "cats: 3 tasks: 2 reused, 1 to run, 4 at a time"
    assert "(3 tasks, 2 reused) in " in second.out
    assert "; 1 coin this run, 3 coins in total" in second.out

    assert run(path, "--base-url", emu.url) == 0  # -q: the summary alone still says it
    assert "(3 tasks, 3 reused)" in capsys.readouterr().out
    assert main(["run", str(path), "--base-url", emu.url, "--json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    started = next(e for e in events if e["event"] == "run_started")
    assert (started["reused"], started["to_run"]) == (3, 0)
    finished = events[-1]
    assert finished["event"] == "run_finished"
    assert (finished["coins_this_run"], finished["coins_total"]) == (0, 3)


def test_a_terminal_shows_the_reused_line_too() -> None:
    import io

    from rich.console import Console

    from rhflow.progress import LiveReporter

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    reporter = LiveReporter(console, auto_refresh=False)
    reporter.emit(
        "run_started", pipeline="cats", total=3, to_run=1, reused=2, skipped=2, concurrency=4
    )
    reporter.close()
    assert "cats: 3 tasks: 2 reused, 1 to run, 4 at a time" in screen.getvalue()


def interrupted(emu: Emulator, path: Path, *args: str) -> tuple[list[str], list[str]]:
    """Run ``rhflow run`` (plain output) in a process, Ctrl-C it once both tasks are submitted;
    its stdout and stderr lines."""
    import os
    import signal
    import subprocess
    import sys

    from tests.test_resume import REPO

    env = {**os.environ, "RH_API_KEY": "k" * 32, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rhflow", "run", str(path), "--base-url", emu.url, *args],
        cwd=path.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line.rstrip("\n"))
        if sum("submitted as task" in s for s in seen) == 2:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    return out.splitlines(), seen + err.splitlines()


def test_after_an_interrupt_the_last_line_says_how_to_resume(
    make_emulator: EmulatorFactory, tmp_path: Path
) -> None:
    from rhflow.progress import RESUME_HINT

    emu = make_emulator(task_seconds=(5.0, 5.0))
    out, err = interrupted(emu, pipeline(tmp_path, seeds=2))
    assert out[-1] == RESUME_HINT
    assert sum(": cancelled (interrupted)" in line for line in err) == 2


def test_detach_prints_one_line_per_task_left_running(
    make_emulator: EmulatorFactory, tmp_path: Path
) -> None:
    emu = make_emulator(task_seconds=(5.0, 5.0))
    out, err = interrupted(emu, pipeline(tmp_path, seeds=2), "--detach")
    left = [line for line in err if "left running remotely" in line]
    assert len(left) == 2 and all("the next run picks it up" in line for line in left)
    assert not [line for line in err if "cancelled" in line]
    assert out[-1].startswith("to resume, run the same command again")
    assert emu.stats()["tasks"]["cancelled"] == 0


def test_run_json_reports_why_a_run_could_not_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "version: 1\nsteps:\n  gen:\n    workflow: '1'\n    nodes: {'6': {text: '{{ x'}}\n"
    )
    assert main(["run", str(bad), "--json"]) == 2
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1
    event = json.loads(out[0])
    assert event["event"] == "run_error" and event["code"] == 2
    assert (event["file"], event["line"], event["col"]) == (str(bad), 5, 25)
    assert event["problems"][0]["path"] == "steps.gen.nodes.6.text"

    assert main(["run", str(pipeline(tmp_path)), "--json"]) == 2  # no key
    event = json.loads(capsys.readouterr().out)
    assert event["event"] == "run_error" and "RH_API_KEY" in event["message"]

    assert main(["run", str(bad), "--json", "--concurrency", "many"]) == 2  # click's own check
    event = json.loads(capsys.readouterr().out)
    assert event["event"] == "run_error" and "--concurrency" in event["message"]


def test_status_lists_stale_files_and_exits_by_how_the_run_stands(
    make_emulator: EmulatorFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RH_API_KEY", "k" * 32)
    emu = make_emulator()
    path = styled(tmp_path, outputs="{{ vars.style }}-{{ seed }}.{{ ext }}")
    assert run(path, "--base-url", emu.url) == 0
    assert main(["status", "out"]) == 0
    assert "stale:" not in capsys.readouterr().out
    assert run(path, "--base-url", emu.url, "--set", "style=oil") == 0
    capsys.readouterr()
    assert main(["status", "out"]) == 0
    text = capsys.readouterr().out
    assert "stale: 2 file(s) of tasks no longer in the plan (rhflow run --prune removes them):" in (
        text
    )
    assert text.count("ink-") == 2 and "oil-" not in text
    assert main(["status", "out", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert sorted(Path(s["path"]).name for s in summary["stale"]) == ["ink-1.png", "ink-2.png"]
    assert summary["exit_code"] == 0


def test_tasks_taken_from_the_cache_cost_this_run_nothing(
    make_emulator: EmulatorFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RH_API_KEY", "k" * 32)
    emu = make_emulator(account="consumer", concurrency=50)  # a key that pays coins
    path, cache = pipeline(tmp_path, seeds=2), str(tmp_path / "cache")
    assert run(path, "--base-url", emu.url, "--cache", cache) == 0
    assert "; 2 coins this run, 2 coins in total" in capsys.readouterr().out
    assert run(path, "--base-url", emu.url, "--cache", cache, "--out", "elsewhere") == 0
    assert "; 0 coins this run, " in capsys.readouterr().out
    assert emu.stats()["tasks"]["created"] == 2


def test_ctrl_c_while_the_command_line_is_still_loading_is_an_interrupt_not_a_traceback(
    tmp_path: Path,
) -> None:
    """On a loaded machine ``rhflow`` can take a second to import; a Ctrl-C then lands inside
    an import. Here it is made to land there for certain: the first module the command line
    imports raises KeyboardInterrupt, as the signal would."""
    import os
    import subprocess
    import sys

    (tmp_path / "click.py").write_text("raise KeyboardInterrupt\n")
    root = Path(__file__).resolve().parent.parent
    run = subprocess.run(
        [sys.executable, "-m", "rhflow", "run", "pipelines/sweep.yaml", "--emulator"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{root}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (run.returncode, run.stdout, run.stderr) == (130, "", "Interrupted.\n")

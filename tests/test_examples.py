"""Example pipelines: every valid one validates and plans, every invalid one gives exactly
its expected lines; and the ``validate`` / ``plan`` commands end to end."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from rhflow.cli import cli
from rhflow.commands.validate import validate_files
from rhflow.errors import ConfigError
from rhflow.pipeline.loader import load_pipeline
from rhflow.planning.planner import plan
from rhflow.planning.summary import plan_json, plan_json_chunks

ROOT = Path(__file__).parent.parent
EXAMPLES = Path(__file__).parent / "examples"
VALID = sorted((EXAMPLES / "valid").glob("*.yaml"))
INVALID = sorted((EXAMPLES / "invalid").glob("*.yaml"))
PIPELINES = sorted((ROOT / "pipelines").glob("*.yaml"))


def test_there_are_enough_examples() -> None:
    assert len(INVALID) >= 30
    assert len(VALID) >= 8
    assert {p.name for p in PIPELINES} >= {"sweep.yaml", "chain.yaml", "image-input.yaml"}


@pytest.mark.parametrize("path", VALID + PIPELINES, ids=lambda p: p.name)
def test_valid_examples_validate_and_plan(path: Path) -> None:
    graph = plan(load_pipeline(path))
    assert graph.tasks
    assert graph.warnings == ()


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_examples_report_exactly_the_expected_problems(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(path.parent)
    expected = path.with_suffix(".expected").read_text(encoding="utf-8").splitlines()
    result = validate_files([path.name])
    assert not result.ok
    assert list(result.lines) == expected


def run(*args: str) -> tuple[int, str, str]:
    """Invoke the CLI as ``rhflow.cli.main`` does: a command's int return is the exit code."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False, standalone_mode=False)
    assert result.exit_code == 0
    return result.return_value, result.stdout, result.stderr


def test_validate_command_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, out, err = run("validate", "pipelines/sweep.yaml", "pipelines/chain.yaml")
    assert (code, err) == (0, "")
    assert out == "pipelines/sweep.yaml: ok (6 tasks)\npipelines/chain.yaml: ok (6 tasks)\n"


def test_validate_command_reports_every_problem_and_exits_1(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(EXAMPLES / "invalid")
    code, out, _ = run("validate", "many-problems.yaml", "../valid/titles.yaml")
    assert code == 1
    assert out == (
        "many-problems.yaml:5:12: steps.a.needs: unknown step 'ghost'; steps are: a, b\n"
        "many-problems.yaml:8:19: steps.a.nodes.6.text: "
        "undefined in template: 'nope' is not defined\n"
        "many-problems.yaml:9:27: steps.a.nodes.2.image.file: file not found: missing.png "
        "(paths are relative to the pipeline file)\n"
        "many-problems.yaml:13:19: steps.b.nodes.3.seed: template syntax error: unexpected end of "
        "template, expected 'end of print statement'.\n"
        "../valid/titles.yaml: ok (1 task)\n"
    )


def test_validate_a_missing_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    code, out, _ = run("validate", missing)
    assert code == 1
    assert out == f"{missing}:1:1: cannot read the file: No such file or directory\n"


def test_validate_with_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, out, _ = run("validate", "pipelines/sweep.yaml", "--set", "style=ink")
    assert (code, out) == (0, "pipelines/sweep.yaml: ok (6 tasks)\n")


def test_plan_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    graph = plan(load_pipeline("pipelines/chain.yaml"))
    ids = [t.id for t in graph.tasks]
    code, out, err = run("plan", "pipelines/chain.yaml", "--only", "subject=harbour")
    assert (code, err) == (0, "")
    assert out == (
        "TASK              STEP    PARAMS                       NEEDS\n"
        f"{ids[1]}  draft   subject=harbour              -\n"
        f"{ids[4]}  refine  subject=harbour denoise=0.4  {ids[1]}\n"
        f"{ids[5]}  refine  subject=harbour denoise=0.7  {ids[1]}\n"
        "3 tasks in pipeline 'chain': draft 1, refine 2\n"
    )


def test_plan_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, out, err = run("plan", "pipelines/image-input.yaml", "--json", "--limit", "1")
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert data["pipeline"] == "image-input"
    (task,) = data["tasks"]
    assert set(task) == {
        "id",
        "step",
        "params",
        "node_info_list",
        "needs",
        "target",
        "files",
        "deferred",
    }
    assert task["step"] == "restyle"
    assert task["params"] == {"style": "ink", "seed": 11}
    assert task["node_info_list"] == [
        {"nodeId": "2", "fieldName": "image", "fieldValue": "<upload:refs/face.png>"},
        {"nodeId": "6", "fieldName": "text", "fieldValue": "a face, ink"},
        {"nodeId": "3", "fieldName": "seed", "fieldValue": 11},
        {"nodeId": "3", "fieldName": "steps", "fieldValue": 4},
        {"nodeId": "3", "fieldName": "denoise", "fieldValue": 0.6},
    ]
    assert task["needs"] == []
    assert task["target"] == {"kind": "workflow", "id": "1904136902449209347"}
    digest = hashlib.sha256((ROOT / "pipelines/refs/face.png").read_bytes()).hexdigest()
    assert task["files"] == [{"index": 0, "path": "refs/face.png", "sha256": digest}]
    assert task["deferred"] == []


def test_plan_json_of_a_chain_lists_upstream_ids_and_deferred_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    code, out, _ = run("plan", "pipelines/chain.yaml", "--json")
    assert code == 0
    tasks = json.loads(out)["tasks"]
    refine = tasks[2]
    assert refine["needs"] == [tasks[0]["id"]]
    assert refine["deferred"] == [{"index": 0, "template": "{{ needs.draft.outputs[0] }}"}]
    assert refine["node_info_list"][0]["fieldValue"] == "{{ needs.draft.outputs[0] }}"


def test_plan_warns_about_identical_requests_on_stderr(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text('version: 1\nsteps:\n  gen:\n    workflow: "1"\n    matrix: {n: [1, 2]}\n')
    code, out, err = run("plan", str(path))
    assert code == 0
    assert out.endswith("2 tasks in pipeline 'dup': gen 2\n")
    assert err.startswith("Warning: step 'gen': 2 tasks send identical requests (")
    assert "Vary the seed per task" in err


def test_plan_of_an_invalid_file_is_an_error_without_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rhflow.cli import main

    monkeypatch.chdir(EXAMPLES / "invalid")
    assert main(["plan", "cycle.yaml"]) == 2


def test_plan_rejects_an_unknown_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rhflow.cli import main

    monkeypatch.chdir(ROOT)
    assert main(["plan", "pipelines/sweep.yaml", "--set", "stlye=ink"]) == 2
    assert capsys.readouterr().err == (
        "Error: --set stlye=...: the pipeline has no variable 'stlye' (did you mean 'style'?); "
        "variables are: style\n"
    )


def test_plan_rejects_a_set_value_that_contains_itself(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rhflow.cli import main

    monkeypatch.chdir(ROOT)
    assert main(["plan", "pipelines/sweep.yaml", "--set", "style=&a [*a]"]) == 2
    assert capsys.readouterr().err == (
        "Error: --set style=...: a YAML alias refers to itself (line 1, column 5); "
        "a value cannot contain itself: alias another anchor or write the value out\n"
    )


def test_plan_set_changes_the_rendered_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    _, out, _ = run("plan", "pipelines/sweep.yaml", "--json", "--set", "style=ink", "--limit", "1")
    (first,) = [t for t in json.loads(out)["tasks"] if t["params"] == {"subject": "cat", "seed": 1}]
    assert first["node_info_list"][0]["fieldValue"] == "a portrait of a cat, ink"


def test_validate_shows_plan_warnings_on_stderr(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text('version: 1\nsteps:\n  gen:\n    workflow: "1"\n    matrix: {n: [1, 2]}\n')
    code, out, err = run("validate", str(path))
    assert (code, out) == (0, f"{path}: ok (2 tasks)\n")
    assert err.startswith(f"{path}: warning: step 'gen': 2 tasks send identical requests (")


@pytest.mark.parametrize("name", ["sweep", "chain", "image-input"])
def test_plan_json_is_written_in_pieces_a_task_per_line(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A copy of the examples: an output folder left by running them here (README's first
    # command) would add an estimate from its manifests to what plan prints.
    shutil.copytree(ROOT / "pipelines", tmp_path / "pipelines")
    monkeypatch.chdir(tmp_path)
    graph = plan(load_pipeline(tmp_path / "pipelines" / f"{name}.yaml"))
    whole = "".join(plan_json_chunks(graph, batch=2))
    assert json.loads(whole) == plan_json(graph)
    assert len(list(plan_json_chunks(graph, batch=2))) == 3 + -(-len(graph.tasks) // 2)
    lines = whole.splitlines()
    assert lines[:2] == ["{", f'  "pipeline": "{graph.pipeline}",'] and lines[-2:] == ["  ]", "}"]
    tasks = [json.loads(line.strip().rstrip(",")) for line in lines[3:-2]]
    assert tasks == plan_json(graph)["tasks"]
    code, out, _ = run("plan", f"pipelines/{name}.yaml", "--json")
    assert (code, out) == (0, whole + "\n")
    empty = replace(graph, tasks=())
    assert json.loads("".join(plan_json_chunks(empty))) == {"pipeline": name, "tasks": []}
    extra = {"estimate": {"coins": 1.5, "sources": ["a", "b"]}}
    both = json.loads("".join(plan_json_chunks(graph, batch=2, extra=extra)))
    assert both == {**plan_json(graph), **extra}
    assert list(both) == ["pipeline", "tasks", "estimate"]


def test_a_missing_input_file_is_a_warning_for_validate_and_a_problem_for_run_and_plan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("p.yaml").write_text(
        'version: 1\nsteps:\n  a:\n    workflow: "1"\n    nodes:\n'
        '      "2": {image: {file: refs/nope.png}}\n'
    )
    message = "file not found: refs/nope.png (paths are relative to the pipeline file)"
    with pytest.raises(ConfigError) as caught:
        load_pipeline("p.yaml")
    assert str(caught.value.problems[0]) == f"p.yaml:6:27: steps.a.nodes.2.image.file: {message}"
    result = validate_files(["p.yaml"])
    assert result.ok and not result.checked
    assert result.warnings == (
        "p.yaml:6:20: warning: steps.a.nodes.2.image.file: input file not found yet: "
        "refs/nope.png (paths are relative to the pipeline file); put the file there before "
        "rhflow plan or run, which refuse a missing input",
    )
    with pytest.raises(ConfigError, match=r"refs/nope\.png"):  # the CLI: exit 2, no traceback
        run("plan", "p.yaml")

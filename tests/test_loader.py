"""The loader: YAML positions, defaults, overrides from the command line, workflow sources."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from rhflow.emulator import Emulator
from rhflow.errors import ConfigError, Problem, UsageError
from rhflow.model import DEFAULT_OUTPUTS
from rhflow.pipeline.loader import load_pipeline, parse_document, read_rows
from rhflow.pipeline.workflows import CachedWorkflows, resolve_node
from rhflow.planning.planner import plan

ROOT = Path(__file__).parent.parent
T2I = json.loads((ROOT / "pipelines/workflows/t2i.json").read_text())


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def problems(path: Path, **options: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_pipeline(path, **options)
    return [str(p) for p in info.value.problems]


def test_document_marks_values_and_keys() -> None:
    doc, dupes = parse_document(
        "version: 1\nsteps:\n  a:\n    workflow: '1'\n    needs: [x, y]\n", "f"
    )
    assert dupes == []
    assert doc.where(("steps", "a", "workflow")) == (4, 15)
    assert doc.where(("steps", "a", "workflow"), at_key=True) == (4, 5)
    assert doc.where(("steps", "a", "needs", 1)) == (5, 16)
    assert doc.where(("steps", "a", "missing", "deeper")) == (4, 5)
    assert doc.problem(("steps", "a", "needs", 1), "m") == Problem(
        "f", 5, 16, "steps.a.needs[1]", "m"
    )


def test_duplicate_keys_are_reported(tmp_path: Path) -> None:
    path = write(tmp_path, 'version: 1\nsteps:\n  a: {workflow: "1"}\n  a: {workflow: "2"}\n')
    assert problems(path) == [f"{path}:4:3: steps.a: duplicate key; each key may appear once"]


def test_yaml_syntax_error_is_located(tmp_path: Path) -> None:
    path = write(tmp_path, 'version: 1\nsteps: {a: {workflow: "1"}\n')
    (line,) = problems(path)
    assert line.startswith(f"{path}:3:1: invalid YAML: ")


def test_defaults_fill_every_unset_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(
        tmp_path,
        """
        version: 1
        defaults: {timeout: 60, instance_type: plus, outputs: "{{ step }}-{{ index }}.{{ ext }}"}
        steps:
          a: {workflow: "1"}
          b: {workflow: "1", timeout: 5, retries: 0, add_metadata: false}
        """,
    )
    pipeline = load_pipeline(path)
    a, b = pipeline.steps
    assert (a.retries, a.timeout, a.instance_type, a.outputs) == (
        2,
        60.0,
        "plus",
        "{{ step }}-{{ index }}.{{ ext }}",
    )
    assert (b.retries, b.timeout, b.add_metadata) == (0, 5.0, False)
    assert pipeline.name == "p"
    assert pipeline.output_dir == tmp_path / "out" / "p"
    assert pipeline.concurrency == 4


def test_builtin_defaults(tmp_path: Path) -> None:
    pipeline = load_pipeline(write(tmp_path, 'version: 1\nsteps:\n  a: {workflow: "1"}\n'))
    (step,) = pipeline.steps
    assert (step.retries, step.timeout, step.outputs) == (2, 1800.0, DEFAULT_OUTPUTS)
    assert DEFAULT_OUTPUTS == "{{ step }}/{{ task }}-{{ index }}.{{ ext }}"


def test_command_line_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        version: 1
        output: build/x
        concurrency: 2
        vars: {style: ink, size: 64}
        steps:
          a:
            workflow: "1"
            nodes: {"5": {width: "{{ vars.size }}"}, "6": {text: "{{ vars.style }}"}}
        """,
    )
    pipeline = load_pipeline(path, set_vars=["size=128"], output=tmp_path / "o", concurrency=9)
    assert pipeline.vars == {"style": "ink", "size": 128}
    assert pipeline.output_dir == tmp_path / "o"
    assert pipeline.concurrency == 9
    (task,) = plan(pipeline).tasks
    assert [e["fieldValue"] for e in task.node_info_list] == [128, "ink"]
    assert load_pipeline(path, set_vars={"style": "oil"}).vars["style"] == "oil"
    assert load_pipeline(path).hash != pipeline.hash
    # the output folder and the concurrency change no task: shards in other folders share it
    same = load_pipeline(path, set_vars=["size=128"], output=tmp_path / "p", concurrency=1)
    assert same.hash == pipeline.hash


def test_an_unknown_variable_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, 'version: 1\nvars: {style: ink}\nsteps:\n  a: {workflow: "1"}\n')
    with pytest.raises(UsageError) as info:
        load_pipeline(path, set_vars=["stlye=x"])
    assert (
        str(info.value)
        == "--set stlye=...: the pipeline has no variable 'stlye' (did you mean 'style'?); "
        "variables are: style"
    )


def test_paths_are_relative_to_the_pipeline_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "in.png").write_bytes(b"png")
    path = write(
        tmp_path,
        'version: 1\nsteps:\n  a:\n    workflow: "1"\n'
        '    nodes: {"2": {image: {file: sub/in.png}}}\n',
    )
    monkeypatch.chdir(ROOT)
    (task,) = plan(load_pipeline(path)).tasks
    assert task.files[0].path == tmp_path / "sub" / "in.png"


class DictWorkflows:
    def __init__(self, graphs: Mapping[str, Mapping[str, Any]]) -> None:
        self.graphs = graphs
        self.asked: list[str] = []

    def get(self, workflow_id: str) -> Mapping[str, Any] | None:
        self.asked.append(workflow_id)
        return self.graphs.get(workflow_id)


def test_a_workflow_source_checks_overrides_without_sending_the_graph(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        version: 1
        steps:
          a:
            workflow: "42"
            nodes:
              KSampler: {seed: 1, stepz: 3}
              "5": {width: wide}
        """,
    )
    source = DictWorkflows({"42": T2I})
    assert problems(path, workflows=source) == [
        f"{path}:6:27: steps.a.nodes.KSampler.stepz: node 3 (KSampler) has no field 'stepz' "
        "(did you mean 'steps'?); "
        "fields are: cfg, denoise, latent_image, model, negative, positive, sampler_name, "
        "scheduler, seed, steps",
        f"{path}:7:20: steps.a.nodes.5.width: field 'width' of node 5 holds a number in the "
        'workflow (512), but the value is "wide"; give a number',
    ]
    assert source.asked == ["42"]
    fixed = path.read_text().replace("stepz", "steps").replace("wide", "96")
    path.write_text(fixed)
    (task,) = plan(load_pipeline(path, workflows=source)).tasks
    assert task.target.workflow_json is None
    assert task.node_info_list[0]["nodeId"] == "3"


def test_unknown_workflows_are_not_checked(tmp_path: Path) -> None:
    path = write(
        tmp_path, 'version: 1\nsteps:\n  a:\n    workflow: "7"\n    nodes: {"99": {x: 1}}\n'
    )
    assert len(plan(load_pipeline(path, workflows=DictWorkflows({}))).tasks) == 1


def test_resolve_node_by_id_or_title() -> None:
    assert resolve_node(T2I, "3") == "3"
    assert resolve_node(T2I, "Empty Latent Image") == "5"
    with pytest.raises(
        LookupError, match=r"^node 'Nope' is not in the workflow; nodes are: 3 \(KSampler\), "
    ):
        resolve_node(T2I, "Nope")


def test_cached_workflows_fetch_once_through_the_client(
    emulator: Emulator, api_key: str, tmp_path: Path
) -> None:
    from rhflow.api.client import Client

    with Client(api_key, emulator.url) as client:
        source = CachedWorkflows(client, cache_dir=tmp_path)
        graph = source.get("1904136902449209346")
        assert graph is not None and graph["3"]["class_type"] == "KSampler"
        assert source.get("1") is None  # 380 from the server: unknown here
    assert sorted(p.name for p in tmp_path.iterdir()) == ["1904136902449209346.json"]

    class Offline:
        def get_workflow_json(self, workflow_id: str) -> Any:
            raise AssertionError("the cache should have answered")

    assert CachedWorkflows(Offline(), cache_dir=tmp_path).get("1904136902449209346") == graph
    assert api_key not in (tmp_path / "1904136902449209346.json").read_text()
    assert api_key not in repr(CachedWorkflows(Offline(), cache_dir=tmp_path))


def test_cached_workflows_default_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    class Fixed:
        def get_workflow_json(self, workflow_id: str) -> Any:
            return {"prompt": json.dumps(T2I)}

    assert CachedWorkflows(Fixed()).get("5") == T2I
    assert (tmp_path / "rhflow" / "workflows" / "5.json").is_file()
    assert CachedWorkflows(Fixed()).get("../etc") is None


def test_validate_fetches_workflows_when_a_key_is_set(
    emulator: Emulator, api_key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from rhflow.cli import cli

    path = write(
        tmp_path,
        'version: 1\nsteps:\n  a:\n    workflow: "1904136902449209346"\n'
        '    nodes: {"3": {seeed: 1}}\n',
    )
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("RH_BASE_URL", emulator.url)
    offline = CliRunner().invoke(cli, ["validate", str(path)], standalone_mode=False)
    assert offline.return_value == 0
    monkeypatch.setenv("RH_API_KEY", api_key)
    online = CliRunner().invoke(cli, ["validate", str(path)], standalone_mode=False)
    assert online.return_value == 1
    assert online.stdout.startswith(
        f"{path}:5:19: steps.a.nodes.3.seeed: node 3 (KSampler) has no field 'seeed'"
    )
    host = emulator.url.split("//")[1].replace(":", "_")
    assert (
        tmp_path / "cache" / "rhflow" / "workflows" / host / "1904136902449209346.json"
    ).is_file()


def test_cached_workflows_expire_fall_back_and_can_stay_in_memory(tmp_path: Path) -> None:
    calls: list[str] = []

    class Flaky:
        base_url = "https://www.runninghub.cn"
        fail = False

        def get_workflow_json(self, workflow_id: str) -> Any:
            calls.append(workflow_id)
            if self.fail:
                raise OSError("network down")
            return {"prompt": json.dumps(T2I)}

    client = Flaky()
    assert CachedWorkflows(client, tmp_path).get("5") == T2I
    assert CachedWorkflows(client, tmp_path).get("5") == T2I and calls == ["5"]
    client.fail = True
    assert CachedWorkflows(client, tmp_path, max_age=0).get("5") == T2I  # stale beats nothing
    assert calls == ["5", "5"]
    memory = CachedWorkflows(client, tmp_path / "unused", persist=False)
    client.fail = False
    assert memory.get("6") == T2I and memory.get("6") == T2I and calls == ["5", "5", "6"]
    assert not (tmp_path / "unused").exists()


def test_cached_workflows_are_kept_per_server(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    class Server:
        def __init__(self, base_url: str) -> None:
            self.base_url = base_url

        def get_workflow_json(self, workflow_id: str) -> Any:
            return {"prompt": json.dumps(T2I)}

    CachedWorkflows(Server("https://www.runninghub.ai")).get("7")
    CachedWorkflows(Server("http://127.0.0.1:8800")).get("7")
    folder = tmp_path / "rhflow" / "workflows"
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*.json")) == [
        "127.0.0.1_8800/7.json",
        "www.runninghub.ai/7.json",
    ]


def test_read_rows(tmp_path: Path) -> None:
    csv_file = tmp_path / "r.csv"
    csv_file.write_text("a,b,c\n1,2.5,x\n")
    assert read_rows(csv_file) == [{"a": 1, "b": 2.5, "c": "x"}]
    csv_file.write_text("a,b\n\n1,2\n\n3,4,5\n")
    with pytest.raises(ValueError, match=r"^row 2 has more fields than the header \(3, the hea"):
        read_rows(csv_file)
    csv_file.write_text("a,b\n1\n")
    with pytest.raises(ValueError, match=r"^row 1 has fewer fields than the header \(1, the hea"):
        read_rows(csv_file)
    rows = tmp_path / "r.yaml"
    rows.write_text("- {a: 1}\n- &r {a: [*r]}\n")
    with pytest.raises(ValueError, match=r"^a YAML alias refers to itself \(line 2, column 11\);"):
        read_rows(rows)
    csv_file.write_text("a\n" + "x" * 200_000 + "\n")
    with pytest.raises(ValueError, match=r"^invalid CSV: field larger than field limit"):
        read_rows(csv_file)
    bad = tmp_path / "r.yaml"
    bad.write_text("a: 1\n")
    with pytest.raises(ValueError, match="expected a list of mappings, one per row"):
        read_rows(bad)


def test_an_unreadable_file_says_why(tmp_path: Path) -> None:
    from rhflow.pipeline.sweeps import unreadable

    (tmp_path / "a.csv").write_text("x\n1\n")
    raised = []
    for name in ("a.csv/b.csv", "nope.csv", "."):
        with pytest.raises(OSError) as info:
            (tmp_path / name).read_text()
        raised.append(unreadable(name, info.value))
    raised.append(unreadable("a.csv", PermissionError(13, "Permission denied")))
    raised.append(unreadable("a.csv", OSError(5, "Input/output error")))
    assert raised == [
        "file not found: a.csv/b.csv (paths are relative to the pipeline file)",
        "file not found: nope.csv (paths are relative to the pipeline file)",
        ". is a folder, not a file",
        "cannot read a.csv: permission denied; check its permissions",
        "cannot read a.csv: Input/output error",
    ]


def test_only_yamlfile_imports_yaml_and_only_the_template_modules_import_jinja2() -> None:
    for module in (ROOT / "rhflow").rglob("*.py"):
        text = module.read_text()
        if module.name != "yamlfile.py":
            assert "import yaml" not in text, module
        if module.name not in ("render.py", "sandbox.py"):
            assert "import jinja2" not in text and "from jinja2" not in text, module


def test_yaml_anchors_in_extension_keys(tmp_path: Path) -> None:
    graph = plan(load_pipeline(ROOT / "tests/examples/valid/anchors.yaml"))
    by_step = {t.step: t for t in graph.tasks}
    assert by_step["small"].node_info_list == (
        {"nodeId": "5", "fieldName": "width", "fieldValue": 64},
        {"nodeId": "5", "fieldName": "height", "fieldValue": 64},
    )
    assert by_step["tall"].node_info_list[1] == {
        "nodeId": "5",
        "fieldName": "height",
        "fieldValue": 128,
    }
    recursive = write(
        tmp_path, 'version: 1\nsteps:\n  a: &a\n    workflow: "1"\n    nodes: {"1": {x: *a}}\n'
    )
    assert problems(recursive) == [f"{recursive}:5:22: steps.a.nodes.1.x: {SELF_ALIAS}"]


SELF_ALIAS = (
    "a YAML alias refers to itself; a value cannot contain itself: "
    "alias another anchor or write the value out"
)


def test_an_alias_inside_its_own_anchor_is_a_problem_at_the_alias(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        version: 1
        vars: &v {style: ink, again: *v}
        x-shared: &ok [1, 2]
        steps:
          a:
            workflow: "1"
            matrix: {seed: *ok, n: &n [1, [*n]], m: &m {<<: *m}}
        """,
    )
    assert problems(path) == [
        f"{path}:2:30: vars.again: {SELF_ALIAS}",
        f"{path}:7:36: steps.a.matrix.n[1][0]: {SELF_ALIAS}",
        f"{path}:7:53: steps.a.matrix.m.<<: {SELF_ALIAS}",
    ]


def test_a_set_value_that_contains_itself_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, 'version: 1\nvars: {style: ink}\nsteps:\n  a: {workflow: "1"}\n')
    with pytest.raises(UsageError) as info:
        load_pipeline(path, set_vars=["style=&a [*a]"])
    assert str(info.value) == f"--set style=...: {SELF_ALIAS.replace(';', ' (line 1, column 5);')}"
    assert load_pipeline(path, set_vars=["style=&a [1, *a]x"]).vars["style"] == "&a [1, *a]x"


def test_a_corrupt_cache_entry_is_fetched_again(tmp_path: Path) -> None:
    (tmp_path / "5.json").write_text("{not json")
    calls: list[str] = []

    class Counting:
        def get_workflow_json(self, workflow_id: str) -> Any:
            calls.append(workflow_id)
            return T2I

    assert CachedWorkflows(Counting(), cache_dir=tmp_path).get("5") == T2I
    assert CachedWorkflows(Counting(), cache_dir=tmp_path).get("5") == T2I
    assert calls == ["5"]
    assert json.loads((tmp_path / "5.json").read_text()) == T2I


@pytest.mark.parametrize("data", [None, [], {}, {"3": 1}, {"3": {"inputs": []}}, "not json"])
def test_workflow_json_of_the_wrong_shape_is_not_used(data: Any) -> None:
    from rhflow.pipeline.workflows import workflow_nodes

    assert workflow_nodes(data) is None

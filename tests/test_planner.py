"""The planner: sweeps, chains, joins, ids, placeholders, --limit/--only, run-time helpers."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from rhflow.errors import ConfigError, PlanError, UsageError
from rhflow.model import DeferredValue, TaskGraph
from rhflow.pipeline.loader import load_pipeline
from rhflow.pipeline.needs import order_steps
from rhflow.pipeline.paths import check_output_path
from rhflow.pipeline.yamlfile import parse_assignments
from rhflow.planning.overrides import canonical as _canonical
from rhflow.planning.overrides import canonical_params as _canonical_params
from rhflow.planning.overrides import canonical_value as _canonical_value
from rhflow.planning.planner import output_name, plan, resolve

EXAMPLES = Path(__file__).parent / "examples"
PIPELINES = Path(__file__).parent.parent / "pipelines"


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    shutil.copytree(PIPELINES / "workflows", tmp_path / "workflows", dirs_exist_ok=True)
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def plan_text(tmp_path: Path, text: str, **options: Any) -> TaskGraph:
    set_vars = options.pop("set_vars", ())
    return plan(load_pipeline(write(tmp_path, text), set_vars=set_vars), **options)


def params(graph: TaskGraph, step: str | None = None) -> list[dict[str, Any]]:
    return [dict(t.params) for t in graph.tasks if step is None or t.step == step]


def example(name: str, **options: Any) -> TaskGraph:
    return plan(load_pipeline(EXAMPLES / "valid" / f"{name}.yaml"), **options)


def test_matrix_with_range_include_and_exclude() -> None:
    graph = example("matrix")
    assert params(graph) == [
        {"subject": "cat", "seed": 1},
        {"subject": "cat", "seed": 2},
        {"subject": "cat", "seed": 3},
        {"subject": "dog", "seed": 1},
        {"subject": "dog", "seed": 3},
        {"subject": "fox", "seed": 1},
        {"subject": "fox", "seed": 2},
        {"subject": "fox", "seed": 3},
        {"subject": "owl", "seed": 7},
    ]
    first = graph.tasks[0]
    assert first.node_info_list == (
        {"nodeId": "6", "fieldName": "text", "fieldValue": "a cat, watercolor"},
        {"nodeId": "3", "fieldName": "seed", "fieldValue": 1},
    )
    assert first.target.kind == "workflow"
    assert first.target.id == "1904136902449209346"
    assert first.target.workflow_json is not None
    assert first.retries == 2 and first.timeout == 1800.0


def test_range_with_a_step(tmp_path: Path) -> None:
    graph = plan_text(
        tmp_path,
        """
        version: 1
        steps:
          a:
            workflow: "1"
            matrix: {seed: {range: [10, 0, -4]}}
        """,
    )
    assert params(graph) == [{"seed": 10}, {"seed": 6}, {"seed": 2}]


def test_zip_varies_together_and_multiplies_with_the_matrix() -> None:
    graph = example("zip")
    assert [(p["steps"], p["prompt"], p["seed"]) for p in params(graph)] == [
        (4, "a red fox", 10),
        (4, "a blue owl", 20),
        (4, "a green frog", 30),
        (8, "a red fox", 10),
        (8, "a blue owl", 20),
        (8, "a green frog", 30),
    ]
    assert graph.tasks[0].node_info_list[2] == {
        "nodeId": "3",
        "fieldName": "steps",
        "fieldValue": 4,
    }


@pytest.mark.parametrize("kind", ["csv", "jsonl", "yaml"])
def test_rows_from_a_file(kind: str) -> None:
    graph = example(f"rows-{kind}")
    assert params(graph)[:2] == [
        {"prompt": "a red fox", "seed": 1},
        {"prompt": "a blue owl", "seed": 2},
    ]
    assert graph.tasks[1].node_info_list == (
        {"nodeId": "6", "fieldName": "text", "fieldValue": "a blue owl"},
        {"nodeId": "3", "fieldName": "seed", "fieldValue": 2},
    )
    if kind == "csv":
        assert params(graph)[2] == {"prompt": "a cat, sleeping", "seed": 3}


def test_node_info_list_raw_form_comes_before_nodes() -> None:
    graph = example("node-info-list")
    assert graph.tasks[1].node_info_list == (
        {"nodeId": "6", "fieldName": "text", "fieldValue": "a lighthouse"},
        {"nodeId": "3", "fieldName": "seed", "fieldValue": 2},
        {"nodeId": "5", "fieldName": "width", "fieldValue": 64},
        {"nodeId": "5", "fieldName": "height", "fieldValue": 64},
    )


def test_nodes_addressed_by_title_become_ids() -> None:
    (task,) = example("titles").tasks
    assert [(e["nodeId"], e["fieldName"], e["fieldValue"]) for e in task.node_info_list] == [
        ("3", "seed", 5),
        ("5", "width", 64),
        ("5", "height", 64),
        ("9", "filename_prefix", "gen"),
    ]


def test_chain_one_task_per_upstream_task_and_times_own_matrix() -> None:
    graph = example("chain")
    drafts = [t for t in graph.tasks if t.step == "draft"]
    upscales = [t for t in graph.tasks if t.step == "upscale"]
    varies = [t for t in graph.tasks if t.step == "vary"]
    assert [dict(t.needs) for t in upscales] == [{"draft": d.id} for d in drafts]
    assert params(graph, "upscale") == [{"subject": "cat"}, {"subject": "dog"}]
    assert params(graph, "vary") == [
        {"subject": s, "denoise": d} for s in ("cat", "dog") for d in (0.3, 0.6, 0.9)
    ]
    assert [t.needs["draft"] for t in varies] == [drafts[0].id] * 3 + [drafts[1].id] * 3
    up = upscales[0]
    assert up.node_info_list[0]["fieldValue"] == "{{ needs.draft.outputs[0] }}"
    assert up.deferred == (DeferredValue(0, "{{ needs.draft.outputs[0] }}"),)
    assert up.retries == 3 and up.timeout == 120.0
    assert drafts[0].retries == 1
    order = [t.step for t in graph.tasks]
    assert order == sorted(order, key=["draft", "upscale", "vary"].index)


def test_two_needs_join_on_shared_parameters() -> None:
    graph = example("join")
    faces = {
        (t.params["subject"], t.params["seed"]): t.id for t in graph.tasks if t.step == "faces"
    }
    backs = {
        (t.params["subject"], t.params["place"]): t.id
        for t in graph.tasks
        if t.step == "backgrounds"
    }
    compose = [t for t in graph.tasks if t.step == "compose"]
    assert len(compose) == 8
    for task in compose:
        p = task.params
        assert task.needs == {
            "faces": faces[(p["subject"], p["seed"])],
            "backgrounds": backs[(p["subject"], p["place"])],
        }


def test_steps_are_planned_upstream_first_whatever_the_file_order(tmp_path: Path) -> None:
    graph = plan_text(
        tmp_path,
        """
        version: 1
        steps:
          late:
            needs: early
            workflow: "1"
          early:
            workflow: "1"
        """,
    )
    assert [t.step for t in graph.tasks] == ["early", "late"]


def test_order_steps_reports_a_cycle() -> None:
    with pytest.raises(ValueError, match=r"^a -> b -> c -> a$"):
        order_steps({"a": ["b"], "b": ["c"], "c": ["a"]})
    assert order_steps({"x": [], "y": ["x"], "z": []}) == ["x", "y", "z"]


def test_limit_keeps_the_first_combinations_of_each_step() -> None:
    graph = example("chain", limit=1)
    assert params(graph) == [
        {"subject": "cat"},
        {"subject": "cat"},
        {"subject": "cat", "denoise": 0.3},
    ]


def test_only_keeps_matching_tasks_and_their_downstream() -> None:
    graph = example("chain", only=["subject=dog", "denoise=0.6"])
    assert params(graph) == [
        {"subject": "dog"},
        {"subject": "dog"},
        {"subject": "dog", "denoise": 0.6},
    ]


def test_only_with_an_unknown_key_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as info:
        example("chain", only=["subjcet=dog"])
    assert str(info.value) == (
        "--only subjcet=...: no step has a parameter 'subjcet'; parameters are: denoise, subject"
    )


def test_limit_must_be_positive() -> None:
    with pytest.raises(UsageError, match="--limit must be at least 1, got 0"):
        example("chain", limit=0)


def test_ids_are_stable_and_change_only_where_the_request_changes(tmp_path: Path) -> None:
    text = """
        version: 1
        vars: {tone: warm}
        steps:
          a:
            workflow: "1"
            matrix: {subject: [cat, dog]}
            nodes: {"6": {text: "{{ subject }}"}}
          b:
            needs: a
            workflow: "2"
            nodes: {"6": {text: "{{ subject }}, {{ vars.tone }}"}}
          c:
            needs: b
            workflow: "2"
    """
    first = plan_text(tmp_path, text)
    again = plan_text(tmp_path, text)
    assert [t.id for t in first.tasks] == [t.id for t in again.tasks]
    assert len({t.id for t in first.tasks}) == 6
    changed = plan_text(tmp_path, text, set_vars={"tone": "cold"})
    same = [old.id == new.id for old, new in zip(first.tasks, changed.tasks, strict=True)]
    assert same == [True, True, False, False, False, False]  # a unchanged; b and its downstream c
    edited = plan_text(tmp_path, text.replace("[cat, dog]", "[cat, fox]"))
    same = [old.id == new.id for old, new in zip(first.tasks, edited.tasks, strict=True)]
    assert same == [True, False, True, False, True, False]  # only the dog -> fox lineage


def test_ids_depend_on_input_file_contents(tmp_path: Path) -> None:
    (tmp_path / "ref.png").write_bytes(b"one")
    text = """
        version: 1
        steps:
          a:
            workflow: "1904136902449209347"
            workflow_file: workflows/i2i.json
            nodes: {"2": {image: {file: ref.png}}}
    """
    (before,) = plan_text(tmp_path, text).tasks
    (tmp_path / "ref.png").write_bytes(b"two")
    (after,) = plan_text(tmp_path, text).tasks
    assert before.id != after.id
    assert after.node_info_list == (
        {"nodeId": "2", "fieldName": "image", "fieldValue": "<upload:ref.png>"},
    )
    (item,) = after.files
    assert item.index == 0
    assert item.path == (tmp_path / "ref.png").absolute()
    assert item.sha256 == "3fc4ccfe745870e2c0d99f71f30ff0656c8dedd41cc1d7d3d376b0dbe685e2f3"


def test_identical_requests_are_warned_about(tmp_path: Path) -> None:
    graph = plan_text(
        tmp_path,
        """
        version: 1
        steps:
          gen:
            workflow: "1"
            matrix: {seed: [1, 2]}
            nodes: {"6": {text: "same every time"}}
        """,
    )
    a, b = (t.id for t in graph.tasks)
    assert a != b
    assert graph.warnings == (
        f"step 'gen': 2 tasks send identical requests ({a}, {b}); ComfyUI would serve all but "
        "the first from its cache. Vary the seed per task, e.g. a seed axis and nodes: "
        '{"3": {seed: "{{ seed }}"}}',
    )
    assert example("matrix").warnings == ()


def test_an_empty_sweep_is_a_plan_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        version: 1
        steps:
          a:
            workflow: "1"
            matrix:
              seed: [1]
              exclude: [{seed: 1}]
        """,
    )
    with pytest.raises(PlanError) as info:
        plan(load_pipeline(path))
    assert str(info.value) == (
        f"{path}:5:5: steps.a: the sweep of step 'a' is empty; check exclude and the lists"
    )


def test_a_template_failing_on_a_later_combination_is_located(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        version: 1
        steps:
          a:
            workflow: "1"
            matrix: {n: [1, 0]}
            nodes: {"3": {cfg: "{{ 10 / n }}"}}
        """,
    )
    with pytest.raises(PlanError) as info:
        plan(load_pipeline(path))
    assert str(info.value) == f"{path}:7:24: steps.a.nodes.3.cfg: template error: division by zero"


def test_resolve_renders_deferred_values_from_objects_or_mappings() -> None:
    graph = example("chain")
    task = next(t for t in graph.tasks if t.step == "vary")
    upstream = SimpleNamespace(
        outputs=["up-0.png", "up-1.png"], urls=[], files=[], params={}, task_id="1"
    )
    values = resolve(task, {"draft": upstream})
    assert values == [
        {"nodeId": "2", "fieldName": "image", "fieldValue": "up-0.png"},
        {"nodeId": "3", "fieldName": "denoise", "fieldValue": 0.3},
    ]
    assert task.node_info_list[0]["fieldValue"] == "{{ needs.draft.outputs[0] }}"
    assert resolve(task, {"draft": {"outputs": ["m.png"]}})[0]["fieldValue"] == "m.png"


def test_resolve_indexes_lazily() -> None:
    task = next(t for t in example("chain").tasks if t.step == "upscale")
    asked: list[int] = []

    class Lazy:
        def __getitem__(self, index: int) -> str:
            asked.append(index)
            return f"uploaded-{index}.png"

        def __len__(self) -> int:
            return 3

    assert resolve(task, {"draft": {"outputs": Lazy()}})[0]["fieldValue"] == "uploaded-0.png"
    assert asked == [0]


def test_resolve_reports_a_missing_output() -> None:
    task = next(t for t in example("chain").tasks if t.step == "upscale")
    with pytest.raises(
        PlanError, match=r"of step 'upscale': undefined in template: list object has no element 0"
    ):
        resolve(task, {"draft": {"outputs": []}})


def test_output_name_renders_the_outputs_template() -> None:
    graph = example("matrix")
    task = graph.tasks[1]
    assert output_name(task, index=0, ext="png", node_id="9", task_short="ab12") == "cat-2-0.png"
    chain = example("chain").tasks[0]
    name = output_name(chain, index=1, ext="webp", node_id="9", task_short="ab12")
    assert name == "draft/ab12-1.webp"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "/etc/x.png",
            "output name '/etc/x.png' is absolute; outputs must stay under the output folder",
        ),
        (
            "C:/x.png",
            "output name 'C:/x.png' is absolute; outputs must stay under the output folder",
        ),
        (
            "a/../../x.png",
            "output name 'a/../../x.png' contains '..'; outputs must stay under the output folder",
        ),
        ("", "output name '' is empty; the outputs template must give a file name"),
        ("dir/", "output name 'dir/' is empty; the outputs template must give a file name"),
        (".", "output name '.' is empty; the outputs template must give a file name"),
        (" ./.", "output name ' ./.' is empty; the outputs template must give a file name"),
        (
            ".rhflow/a.png",
            "output name '.rhflow/a.png' is inside .rhflow/, where rhflow keeps "
            "its state and staging files; choose another folder",
        ),
        ("Manifest.json", "output name 'Manifest.json' would overwrite the run's manifest.json"),
        (
            "a/" + "x" * 256,
            f"output name {'a/' + 'x' * 58!r}... (258 characters) has a part of "
            "256 bytes; file systems take names of at most 255 bytes (and paths of 4,096)",
        ),
        ("a\x00b", "output name 'a\\x00b' contains a NUL character; no file name can"),
    ],
)
def test_output_paths_must_stay_inside(name: str, message: str) -> None:
    with pytest.raises(PlanError) as info:
        check_output_path(name)
    assert str(info.value) == message


def test_output_paths_are_normalised() -> None:
    assert check_output_path("a\\b.png") == "a/b.png"
    assert check_output_path("./a//b.png") == "a/b.png"
    assert check_output_path(" cat/00001-s3-0.png ") == "cat/00001-s3-0.png"
    assert check_output_path("a/manifest.json") == "a/manifest.json"
    two = "é" * 100 + "/" + "é" * 100  # 400 bytes in all, 200 per part
    assert check_output_path(two) == two


def test_parse_assignments() -> None:
    assert parse_assignments(["seed=3", "style=ink wash", "tags=[a, b]", "empty="]) == {
        "seed": 3,
        "style": "ink wash",
        "tags": ["a", "b"],
        "empty": "",
    }
    with pytest.raises(UsageError) as info:
        parse_assignments(["seed"])
    assert str(info.value) == "--set expects KEY=VALUE with KEY a name, got 'seed'"
    with pytest.raises(UsageError, match="--only expects KEY=VALUE"):
        parse_assignments(["=3"], option="--only")
    with pytest.raises(UsageError) as info:
        parse_assignments(["seed=&a {x: *a}"], option="--only")
    assert str(info.value) == (
        "--only seed=...: a YAML alias refers to itself (line 1, column 8); "
        "a value cannot contain itself: alias another anchor or write the value out"
    )


def test_task_context_and_fields_for_the_executor() -> None:
    task = example("app").tasks[0]
    assert task.target.kind == "app"
    assert task.target.id == "1877265245566922753"
    assert task.instance_type == "plus"
    assert task.context["topic"] == "sea"
    assert task.context["params"] == {"topic": "sea"}
    assert task.context["step"] == "caption"
    assert task.node_info_list == (
        {"nodeId": "4", "fieldName": "text", "fieldValue": "write about the SEA"},
    )
    graph = example("app")
    assert graph.concurrency == 2
    assert graph.output_dir == Path("out/app").absolute()
    assert graph.pipeline == "app-run"


def test_a_quick_app_target() -> None:
    (task,) = example("quick-app").tasks
    assert (task.target.kind, task.target.id) == ("quick_app", "1877265245566922753")
    assert task.target.quick_create_code == "1"


def test_a_huge_sweep_is_refused_before_it_is_listed_unless_limited(tmp_path: Path) -> None:
    text = """
        version: 1
        steps:
          a:
            workflow: "1"
            matrix: {x: {range: [0, 2000]}, y: {range: [0, 2000]}}
    """
    path = write(tmp_path, text)
    with pytest.raises(PlanError) as info:
        plan(load_pipeline(path))
    assert str(info.value) == (
        f"{path}:5:5: steps.a: step 'a' would make 4,000,000 tasks, more than --max-tasks "
        "100,000; split the sweep, plan a part of it with --limit or --only, or raise --max-tasks"
    )
    assert params(plan(load_pipeline(path), limit=2)) == [{"x": 0, "y": 0}, {"x": 0, "y": 1}]


def test_a_chain_whose_steps_multiply_past_the_cap_is_refused(tmp_path: Path) -> None:
    text = """
        version: 1
        steps:
          a:
            workflow: "1"
            matrix: {x: {range: [0, 1000]}}
          b:
            needs: a
            workflow: "1"
            matrix: {y: {range: [0, 1000]}}
    """
    path = write(tmp_path, text)
    with pytest.raises(PlanError) as info:
        plan(load_pipeline(path))
    assert str(info.value) == (
        f"{path}:8:5: steps.b: step 'b' would make 1,000,000 tasks (1,000 upstream combinations "
        "x 1,000), after 1,000 in the steps before it, more than --max-tasks 100,000; split the "
        "sweep, plan a part of it with --limit or --only, or raise --max-tasks"
    )


def test_an_exploding_join_is_refused_with_its_size(tmp_path: Path) -> None:
    text = """
        version: 1
        steps:
          a: {workflow: "1", matrix: {x: {range: [0, 400]}}}
          b: {workflow: "1", matrix: {y: {range: [0, 400]}}}
          c: {workflow: "1", needs: [a, b], outputs: "c/{{ x }}-{{ y }}.{{ ext }}"}
    """
    path = write(tmp_path, text)
    with pytest.raises(PlanError) as info:
        plan(load_pipeline(path), max_tasks=10_000)
    assert str(info.value) == (
        f"{path}:6:6: steps.c: step 'c' would make 160,000 tasks (160,000 upstream combinations "
        "x 1), after 800 in the steps before it, more than --max-tasks 10,000; split the sweep, "
        "plan a part of it with --limit or --only, or raise --max-tasks"
    )
    assert len(plan(load_pipeline(path), max_tasks=200_000).tasks) == 800 + 160_000


def test_the_task_cap_counts_every_step_and_can_be_raised(tmp_path: Path) -> None:
    text = """
        version: 1
        steps:
          a: {workflow: "1", matrix: {x: {range: [0, 60]}}}
          b: {workflow: "1", matrix: {y: {range: [0, 50]}}}
    """
    path = write(tmp_path, text)
    with pytest.raises(PlanError, match="step 'b' would make 50 tasks, after 60 in the steps"):
        plan(load_pipeline(path), max_tasks=100)
    assert len(plan(load_pipeline(path), max_tasks=110).tasks) == 110
    with pytest.raises(UsageError, match="--max-tasks must be at least 1, got 0"):
        plan(load_pipeline(path), max_tasks=0)


def test_a_join_on_shared_parameters_keeps_the_nested_loop_order(tmp_path: Path) -> None:
    text = """
        version: 1
        steps:
          a: {workflow: "1", matrix: {x: [1, 2, 3], s: [p, q]}}
          b: {workflow: "1", matrix: {x: [3, 1], t: [[1, 2], [3]]}}
          c: {workflow: "1", needs: [a, b]}
    """
    graph = plan_text(tmp_path, text)
    assert params(graph, "c") == [
        {"x": 1, "s": "p", "t": [1, 2]},
        {"x": 1, "s": "p", "t": [3]},
        {"x": 1, "s": "q", "t": [1, 2]},
        {"x": 1, "s": "q", "t": [3]},
        {"x": 3, "s": "p", "t": [1, 2]},
        {"x": 3, "s": "p", "t": [3]},
        {"x": 3, "s": "q", "t": [1, 2]},
        {"x": 3, "s": "q", "t": [3]},
    ]


def test_outputs_that_would_overwrite_each_other_are_refused(tmp_path: Path) -> None:
    text = """
        version: 1
        steps:
          gen:
            workflow: "1"
            matrix: {seed: [1, 2, 3]}
            nodes: {"3": {seed: "{{ seed }}"}}
            outputs: "{{ step }}-{{ index }}.{{ ext }}"
    """
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        plan(load_pipeline(path))
    a, b, c = _ids(tmp_path, text)
    assert str(info.value) == (
        f"{path}:8:14: steps.gen.outputs: tasks {a} and {b} would both write 'gen-0.png'; add "
        "{{ task }} or a parameter that differs to its outputs template\n"
        f"{path}:8:14: steps.gen.outputs: tasks {a} and {c} would both write 'gen-0.png'; add "
        "{{ task }} or a parameter that differs to its outputs template"
    )
    assert plan_text(tmp_path, text.replace("{{ step }}-", "{{ seed }}-")).tasks
    assert plan_text(tmp_path, text.replace("{{ step }}-", "{{ task }}-")).tasks


def _ids(tmp_path: Path, text: str) -> list[str]:
    """The task ids of ``text`` planned with an outputs template that tells them apart."""
    fixed = text.replace("{{ step }}-", "{{ task }}-")
    return [t.id for t in plan_text(tmp_path, fixed).tasks]


def test_names_that_escape_for_some_tasks_only_are_refused_for_each(tmp_path: Path) -> None:
    text = """
        version: 1
        steps:
          gen:
            workflow: "1"
            matrix: {n: [ok, /etc/passwd, ../up, .rhflow/state.db, manifest, "a\\0b", LONG]}
            outputs: "{{ n }}{{ '.json' if n == 'manifest' else '.png' }}"
    """
    path = write(tmp_path, text.replace("LONG", "x" * 300))
    with pytest.raises(ConfigError) as info:
        plan(load_pipeline(path))
    messages = [p.message.split(": ", 1)[1] for p in info.value.problems]
    assert [(p.line, p.col, p.path) for p in info.value.problems] == [
        (7, 14, "steps.gen.outputs")
    ] * 6
    assert messages == [
        "output name '/etc/passwd.png' is absolute; outputs must stay under the output folder",
        "output name '../up.png' contains '..'; outputs must stay under the output folder",
        "output name '.rhflow/state.db.png' is inside .rhflow/, where rhflow keeps its state and "
        "staging files; choose another folder",
        "output name 'manifest.json' would overwrite the run's manifest.json",
        "output name 'a\\x00b.png' contains a NUL character; no file name can",
        f"output name '{'x' * 60}'... (304 characters) has a part of 304 bytes; file systems take "
        "names of at most 255 bytes (and paths of 4,096)",
    ]


def test_two_steps_writing_one_name_are_refused(tmp_path: Path) -> None:
    text = """
        version: 1
        defaults: {outputs: "{{ n }}.png"}
        steps:
          a: {workflow: "1", matrix: {n: [1, 2]}}
          b: {workflow: "1", matrix: {n: [2, 3]}}
    """
    path = write(tmp_path, text)
    with pytest.raises(
        ConfigError, match=r"tasks \w+ of step 'a' and \w+ would both write '2.png'"
    ):
        plan(load_pipeline(path))


@pytest.mark.parametrize(
    ("axes", "outputs", "clash"),
    [
        ("{s: [Red Fox, red fox]}", "{{ s | slug }}.png", "red-fox.png"),
        ("{s: ['7', '007']}", "{{ s | zpad(3) }}.png", "007.png"),
        ("{a: [x-y, x], b: [z, y-z]}", "{{ a }}-{{ b }}.png", "x-y-z.png"),
        ("{a: [1, 11], b: [1, 11]}", "{{ a }}{{ b }}.png", "111.png"),
        ("{s: [1, 2], include: [{s: 1}]}", "{{ s }}.png", "1.png"),
    ],
)
def test_every_clash_of_output_names_is_found(
    tmp_path: Path, axes: str, outputs: str, clash: str
) -> None:
    with pytest.raises(ConfigError) as info:
        plan_text(
            tmp_path,
            f"""
        version: 1
        steps:
          gen:
            workflow: "1"
            matrix: {axes}
            nodes: {{"3": {{seed: "{{{{ params }}}}"}}}}
            outputs: "{outputs}"
        """,
        )
    assert [p.message.split("would both write ")[-1] for p in info.value.problems] == [
        f"'{clash}'; add {{{{ task }}}} or a parameter that differs to its outputs template"
    ]


def test_the_reserved_output_names_are_what_rhflow_keeps_in_the_folder() -> None:
    from rhflow.execute.downloads import STAGING
    from rhflow.execute.runner import MANIFEST_NAME
    from rhflow.pipeline.paths import RESERVED_FILE, RESERVED_FOLDER
    from rhflow.record.store import STATE_DIR

    assert (RESERVED_FOLDER, RESERVED_FILE) == (STATE_DIR, MANIFEST_NAME)
    assert STAGING.startswith(f"{RESERVED_FOLDER}/")


_ODD_VALUES = [
    "plain", "é 中文 \U0001f600", "quote \" and \\ and \n\t\x00\x1f", "\ud800", "",
    0, -1, 10**30, True, False, None, 0.5, -0.0, 1e300, 1e-7, float("nan"), float("inf"),
    float("-inf"), [1, "a", None], {"b": 1, "a": [2.5]}, (1, 2), {3: "int key"},
]  # fmt: skip


@pytest.mark.parametrize("value", _ODD_VALUES)
def test_the_fast_canonical_text_is_the_encoders_so_task_ids_do_not_change(value: Any) -> None:
    assert _canonical_value(value) == _canonical(value)
    params = {"z": value, "a": 1, "é": value, "B": "x"}
    assert _canonical_params(params) == _canonical(params)
    assert _canonical_params({1: value}) == _canonical({1: value})

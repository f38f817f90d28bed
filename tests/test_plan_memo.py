"""What planning does once instead of once per task must not change any task: a template's
rendering remembered by the values it reads, shared entries, the cycle collector paused."""

from __future__ import annotations

import gc
import textwrap
from pathlib import Path

import pytest

from rhflow.errors import PlanError
from rhflow.pipeline.loader import load_pipeline
from rhflow.pipeline.render import template_limits
from rhflow.planning.planner import plan


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def _plan(tmp_path: Path, body: str) -> list[dict[str, object]]:
    graph = plan(load_pipeline(_write(tmp_path, body)))
    return [{e["fieldName"]: e["fieldValue"] for e in t.node_info_list} for t in graph.tasks]


def test_values_equal_in_python_but_rendered_differently_are_not_mixed_up(
    tmp_path: Path,
) -> None:
    found = _plan(
        tmp_path,
        """
        version: 1
        steps:
          gen:
            workflow: "1"
            matrix: {x: [1, true, 1.0, "1", 0.0, -0.0, false, 0], seed: [1, 2]}
            nodes: {"6": {text: "v{{ x }}", seed: "{{ seed }}"}, "7": {value: "{{ x }}"}}
        """,
    )
    texts = [row["text"] for row in found]
    assert texts == [f"v{x}" for x in ("1", "True", "1.0", "1", "0.0", "-0.0", "False", "0")
                     for _ in (1, 2)]  # fmt: skip
    values = [row["value"] for row in found[::2]]
    assert [(type(v), v) for v in values] == [(type(v), v) for v in
                                              (1, True, 1.0, "1", 0.0, -0.0, False, 0)]  # fmt: skip
    assert str(values[5]) == "-0.0"


def test_a_template_drawing_at_random_draws_for_every_task(tmp_path: Path) -> None:
    found = _plan(
        tmp_path,
        """
        version: 1
        steps:
          gen:
            workflow: "1"
            matrix: {seed: {range: [0, 200]}}
            nodes: {"6": {text: "{{ ['a', 'b', 'c', 'd'] | random }}", seed: "{{ seed }}"}}
        """,
    )
    assert len({row["text"] for row in found}) > 1


def test_a_rendering_found_again_is_still_counted_against_the_total_limit(
    tmp_path: Path,
) -> None:
    path = _write(
        tmp_path,
        """
        version: 1
        steps:
          gen:
            workflow: "1"
            matrix: {seed: {range: [0, 300]}}
            nodes: {"6": {text: "{{ 'x' * 1000 }}", seed: "{{ seed }}"}}
        """,
    )
    with template_limits(["total=200000"]), pytest.raises(PlanError) as caught:
        plan(load_pipeline(path))
    assert "render more than 200,000 characters together" in str(caught.value)


@pytest.mark.parametrize("enabled", [True, False])
def test_the_cycle_collector_is_as_it_was_after_planning_or_failing(
    tmp_path: Path, enabled: bool
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text('version: 1\nsteps: {a: {workflow: "1", matrix: {n: [1, 2]}}}\n')
    bad = tmp_path / "bad.yaml"
    bad.write_text(  # fails on the second task, while planning
        'version: 1\nsteps: {a: {workflow: "1", matrix: {n: [1, 2]},\n'
        '  nodes: {"6": {text: "{{ 1 // (n - 2) }}"}}}}\n'
    )
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        assert len(plan(load_pipeline(good)).tasks) == 2
        assert gc.isenabled() is enabled
        with pytest.raises(PlanError, match="division"):
            plan(load_pipeline(bad))
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_a_task_context_is_the_mapping_templates_see(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
        version: 1
        vars: {tone: warm}
        steps:
          gen:
            workflow: "1"
            matrix: {subject: [cat], seed: [3]}
        """,
    )
    context = plan(load_pipeline(path)).tasks[0].context
    params = {"subject": "cat", "seed": 3}
    whole = {**params, "params": params, "vars": {"tone": "warm"}, "step": "gen"}
    assert context == whole and dict(context) == whole and list(context) == list(whole)
    assert {**context, "index": 1} == {**whole, "index": 1}
    assert "seed" in context and "vars" in context and "index" not in context
    assert len(context) == 5 and context["vars"]["tone"] == "warm"
    with pytest.raises(KeyError):
        context["index"]

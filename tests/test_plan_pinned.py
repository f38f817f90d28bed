"""Task ids and ``rhflow plan --json`` pinned on a small pipeline (tests/examples/pinned): ids key
resume state and the JSON is read by other programs, so a change to the planner, the templates or
the JSON writer that alters either, even by a byte, fails here. Regenerate the pins only for a
change meant to alter them (and say so where users look)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from rhflow.cli import main
from rhflow.model import Pipeline
from rhflow.pipeline.loader import load_pipeline
from rhflow.planning.planner import output_name, plan

PINNED = Path(__file__).parent / "examples" / "pinned"
#: Stands in for the server copy's hash that ``rhflow.lock`` gives a step without a local file.
SERVER_HASH = "5" * 64


def test_plan_json_is_byte_for_byte_the_pinned_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--json", str(PINNED / "pipeline.yaml")]) == 0
    assert capsys.readouterr().out == (PINNED / "plan.json").read_text(encoding="utf-8")


def _with_server_hash(pipeline: Pipeline) -> Pipeline:
    steps = tuple(
        dataclasses.replace(s, target=dataclasses.replace(s.target, content_hash=SERVER_HASH))
        for s in pipeline.steps
    )
    return dataclasses.replace(pipeline, steps=steps)


def test_ids_legacy_ids_and_output_names_are_the_pinned_ones() -> None:
    pinned = json.loads((PINNED / "ids.json").read_text(encoding="utf-8"))
    graph = plan(_with_server_hash(load_pipeline(PINNED / "pipeline.yaml")))
    found = [
        [t.id, t.legacy_id, output_name(t, index=1, ext="png", node_id="9", task_short=t.id[:8])]
        for t in graph.tasks
    ]
    assert found == pinned

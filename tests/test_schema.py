"""The pipeline JSON Schema: valid 2020-12, documented for editors, and its messages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from rhflow.pipeline.loader import parse_document
from rhflow.pipeline.schema import Issue, check, pipeline_schema

ROOT = Path(__file__).parent.parent


def test_the_schema_is_valid_json_schema_2020_12() -> None:
    schema = pipeline_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def _properties(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for name, sub in (node.get("properties") or {}).items():
            yield f"{path}.{name}", sub
        for key, sub in node.items():
            yield from _properties(sub, f"{path}/{key}")
    elif isinstance(node, list):
        for index, sub in enumerate(node):
            yield from _properties(sub, f"{path}[{index}]")


def test_every_property_has_a_title_and_description() -> None:
    missing = [
        path
        for path, sub in _properties(pipeline_schema())
        if "$ref" not in sub and not (sub.get("title") and sub.get("description"))
    ]
    assert missing == []


@pytest.mark.parametrize(
    "path",
    sorted((ROOT / "pipelines").glob("*.yaml"))
    + sorted((ROOT / "tests/examples/valid").glob("*.yaml")),
    ids=lambda p: p.name,
)
def test_examples_match_the_schema_and_point_to_it(path: Path) -> None:
    doc, _ = parse_document(path.read_text(), str(path))
    assert check(doc.data) == []
    if path.parent.name == "pipelines":
        assert path.read_text().startswith(
            "# yaml-language-server: $schema=../schemas/pipeline.schema.json"
        )


def test_every_error_is_reported_at_once() -> None:
    data = {
        "version": 1,
        "colour": "red",
        "steps": {"a": {"workflow": "1", "retries": "two", "matrix": {"seed": "abc"}}, "b": {}},
    }
    assert sorted(check(data), key=lambda i: [str(p) for p in i.path]) == [
        Issue(
            ("colour",),
            "unknown key 'colour'; expected one of: concurrency, defaults, "
            "description, name, output, steps, vars, version",
            at_key=True,
        ),
        Issue(
            ("steps", "a", "matrix", "seed"),
            "an axis is a list of values or {range: [start, stop, step]}",
        ),
        Issue(("steps", "a", "retries"), '"two" is not an integer'),
        Issue(
            ("steps", "b"),
            "set exactly one of `workflow` (a workflow id) or `app` (an AI app's webappId)",
        ),
    ]


def test_type_messages() -> None:
    (issue,) = check({"version": 1, "steps": {"a": {"workflow": "1", "needs": 3}}})
    assert issue == Issue(("steps", "a", "needs"), "needs is a step name or a list of step names")
    (issue,) = check({"version": 1, "vars": [], "steps": {"a": {"app": "5"}}})
    assert issue == Issue(("vars",), "[] is not a mapping")

"""What a workflow lets a pipeline set, and a pipeline file that sets the usual part of it.

``workflow_fields(graph)`` lists an API-format workflow's nodes with their editable fields
(values, not links); an AI app's fields come as the API lists them and are turned into the
same ``NodeFields`` by the caller. ``skeleton(...)`` writes a pipeline file overriding the
fields people change every day (prompt texts, seed, steps, cfg, size), with input files as
``{file: inputs/NAME}`` values whose files the user puts there. Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from rhflow.pipeline.workflows import id_order, is_link

#: Fields overridden by a skeleton, by name: prompt texts, seed, steps, cfg and size.
USUAL_FIELDS = frozenset(
    {"text", "prompt", "text_g", "text_l", "seed", "noise_seed", "steps", "cfg", "width", "height"}
)
#: The folder (beside the pipeline file) a skeleton's input files are asked for in.
INPUTS_DIR = "inputs"
#: Fields of loader nodes that name an input file.
FILE_FIELDS = frozenset({"image", "video", "audio"})
#: AI app field types that take an uploaded file.
APP_FILE_TYPES = frozenset({"IMAGE", "AUDIO", "VIDEO"})

Use = Literal["usual", "file", ""]


@dataclass(frozen=True, slots=True)
class Field:
    """One editable field: its name, value, type name and whether a skeleton sets it."""

    name: str
    value: Any
    type: str
    use: Use = ""
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "type": self.type, "value": self.value}
        return {**out, "description": self.description} if self.description else out


@dataclass(frozen=True, slots=True)
class NodeFields:
    """A node (id, class, ``_meta.title``) and its editable fields, links left out."""

    id: str
    class_type: str
    title: str
    fields: tuple[Field, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "class": self.class_type,
            "title": self.title,
            "fields": [f.to_dict() for f in self.fields],
        }


def type_name(value: Any) -> str:
    """``int``, ``float``, ``string``, ``boolean``, ``list``, ``object`` or ``null``."""
    if isinstance(value, bool):
        return "boolean"
    names = {int: "int", float: "float", str: "string", list: "list", dict: "object"}
    return next((n for t, n in names.items() if isinstance(value, t)), "null")


def workflow_fields(graph: Mapping[str, Any]) -> list[NodeFields]:
    """Every node of an API-format workflow in id order, with the fields it holds values in."""
    nodes = []
    for node_id in sorted(graph, key=id_order):
        node = graph[node_id]
        class_type = str(node.get("class_type", "?"))
        title = str((node.get("_meta") or {}).get("title") or "")
        inputs = node.get("inputs") or {}
        fields = tuple(
            Field(name, value, type_name(value), _use(class_type, name, value))
            for name, value in inputs.items()
            if not is_link(value)
        )
        nodes.append(NodeFields(str(node_id), class_type, title, fields))
    return nodes


def _use(class_type: str, name: str, value: Any) -> Use:
    if name in FILE_FIELDS and isinstance(value, str) and class_type.startswith("Load"):
        return "file"
    if name in USUAL_FIELDS and isinstance(value, (str, int, float)):
        return "usual"
    return ""


def app_value(field_type: str, text: str) -> tuple[Any, str, Use]:
    """An AI app field's value (apiCallDemo sends strings), its type name and use."""
    kind = field_type.upper()
    if kind in APP_FILE_TYPES:
        return text, kind.lower(), "file"
    try:
        if kind == "INT":
            return int(text), "int", "usual"
        if kind == "FLOAT":
            return float(text), "float", "usual"
    except ValueError:
        return text, "string", "usual"
    if kind in ("BOOLEAN", "SWITCH") and text.lower() in ("true", "false"):
        return text.lower() == "true", "boolean", "usual"
    return text, "string", "usual"


# -- the skeleton ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """What the skeleton's step runs: ``workflow`` or ``app`` and its id, and a local copy."""

    kind: Literal["workflow", "app"]
    id: str
    workflow_file: str | None = None
    label: str = ""


def skeleton(target: Target, nodes: Iterable[NodeFields], *, name: str = "main") -> str:
    """A pipeline file, with its ``$schema`` line, that overrides the usual fields of
    ``nodes``; input files are ``{file: inputs/NAME}`` values for the user to put there
    (``rhflow validate`` accepts them missing, with a warning)."""
    slug = _slug(name)
    lines = [
        "# yaml-language-server: $schema=pipeline.schema.json",
        "# (write the schema beside this file with: rhflow schema > pipeline.schema.json)",
        f"# Written by rhflow inspect --skeleton from {target.label or target.id}.",
        "# Every value below is the workflow's own; change them, or sweep one with a matrix:",
        '#   matrix: {seed: [1, 2, 3]}   and then   seed: "{{ seed }}"',
        "version: 1",
        f"name: {slug}",
        f"output: out/{slug}",
        "steps:",
        f"  {slug}:",
        f"    {target.kind}: {json.dumps(target.id)}",
    ]
    if target.workflow_file:
        lines.append(f"    workflow_file: {json.dumps(target.workflow_file)}")
    lines += _node_lines(list(nodes))
    return "\n".join(lines) + "\n"


def _node_lines(nodes: list[NodeFields]) -> list[str]:
    lines = []
    for node in nodes:
        note = f"  # {_one_line(node.title or node.class_type)}"
        values: dict[str, Any] = {f.name: f.value for f in node.fields if f.use == "usual"}
        files = [f for f in node.fields if f.use == "file"]
        for item in files:
            values[item.name] = {"file": input_path(item.value)}
        if files:  # validate warns until the file is there; run and plan refuse it missing
            where = ", ".join(input_path(f.value) for f in files)
            note += f": put the {_kinds(files)} at {where} (beside this file)"
        if values:
            lines.append(f"      {json.dumps(node.id)}: {_flow(values)}{note}")
    if not lines:
        return ["    # no usual fields found: add overrides as  nodes: {NODE: {FIELD: VALUE}}"]
    return ["    nodes:", *lines]


def input_path(value: Any) -> str:
    """Where a skeleton asks for an input file: ``inputs/`` and the file name the workflow
    has (a server path such as ``api/ab12.png`` keeps its last part)."""
    name = str(value).replace("\\", "/").rsplit("/", 1)[-1].strip()
    name = re.sub(r"[^\w.+-]", "_", name).lstrip(".") or "input"
    return f"{INPUTS_DIR}/{name}"


def _kinds(files: list[Field]) -> str:
    """``image``, ``video``, ``audio`` (what one file field takes) or ``files``."""
    if len(files) > 1:
        return "files"
    kinds = {"image", "video", "audio"}
    item = files[0]
    return item.name if item.name in kinds else item.type if item.type in kinds else "file"


def _key(name: str) -> str:
    """A field name as a YAML key: bare when it is a plain identifier, else quoted."""
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) else _json(name)


def _one_line(text: str) -> str:
    """A title from the workflow or the server, safe inside a YAML comment: one line."""
    return " ".join(str(text).split())


def _flow(values: Mapping[str, Any]) -> str:
    """``{text: "a cat", seed: 1}``: JSON scalars are valid YAML flow scalars."""
    items = (
        f"{_key(k)}: {_flow(v) if isinstance(v, Mapping) else _json(v)}" for k, v in values.items()
    )
    return "{" + ", ".join(items) + "}"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _slug(name: str) -> str:
    """A step and pipeline name from ``name`` (letters, digits and ``_``)."""
    text = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_").lower() or "main"
    return text if re.match(r"[A-Za-z_]", text) else f"w_{text}"

"""``rhflow inspect WORKFLOW``: the nodes and editable fields of a workflow or an AI app.

WORKFLOW is a cloud workflow id (its JSON fetched with ``getJsonApiFormat`` through the cache
``rhflow run`` uses), ``app:WEBAPPID`` (the fields ``apiCallDemo`` lists) or a local
API-format JSON file. Prints a table, ``--json``, or with ``--skeleton`` a pipeline file
overriding the usual fields.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from rhflow.api.client import AppInfo, Client
from rhflow.errors import ApiError, UsageError
from rhflow.execute.runner import open_client
from rhflow.pipeline.fields import (
    Field,
    NodeFields,
    Target,
    app_value,
    skeleton,
    workflow_fields,
)
from rhflow.pipeline.workflows import CachedWorkflows, workflow_nodes

_ID = re.compile(r"^[0-9]{1,30}$")
#: Widest value shown in the table (the JSON has them whole).
VALUE_WIDTH = 60
#: The id a skeleton gets when a local workflow file does not say its cloud id.
NO_ID = "0"


@dataclass(frozen=True, slots=True)
class Inspected:
    """What WORKFLOW turned out to be: the skeleton's target, its name and its nodes."""

    source: str  # "workflow", "app" or "file"
    target: Target
    name: str
    nodes: tuple[NodeFields, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "id": self.target.id,
            "name": self.name,
            "workflow_file": self.target.workflow_file,
            "nodes": [node.to_dict() for node in self.nodes],
        }


def inspect(
    workflow: str,
    *,
    as_json: bool = False,
    skeleton_only: bool = False,
    use_emulator: bool = False,
    base_url: str | None = None,
    api_key: str | None = None,
) -> int:
    """Print what ``workflow`` lets a pipeline set (a table, JSON or a skeleton pipeline)."""
    found = inspect_workflow(workflow, emulator=use_emulator, base_url=base_url, api_key=api_key)
    if skeleton_only:
        click.echo(skeleton(found.target, found.nodes, name=found.name), nl=False)
    elif as_json:
        click.echo(json.dumps(found.to_dict(), ensure_ascii=False, indent=2))
    else:
        click.echo(table(found))
    return 0


def inspect_workflow(
    workflow: str,
    *,
    emulator: bool = False,
    base_url: str | None = None,
    api_key: str | None = None,
) -> Inspected:
    """Read a local file, or ask the server (``emulator`` for an in-process one)."""
    if workflow.startswith("app:"):
        app_id = workflow.removeprefix("app:")
        if not _ID.match(app_id):
            raise UsageError(f"app:{app_id}: an AI app id (webappId) is a number")
        with open_client(None, emulator=emulator, base_url=base_url, api_key=api_key) as client:
            return _app(app_id, client)
    if _ID.match(workflow) and not Path(workflow).is_file():
        with open_client(None, emulator=emulator, base_url=base_url, api_key=api_key) as client:
            return _cloud(workflow, client, persist=not emulator)
    if Path(workflow).is_file() or workflow.endswith(".json"):
        return _local(Path(workflow))
    raise UsageError(
        f"'{workflow}' is not a workflow: give a workflow id (the number in its URL), "
        "app:WEBAPPID for an AI app, or an API-format workflow JSON file"
    )


def _cloud(workflow_id: str, client: Client, *, persist: bool) -> Inspected:
    workflows = CachedWorkflows(client, persist=persist)
    graph = workflows.get(workflow_id)
    if graph is None:
        error = workflows.errors.get(workflow_id)
        if isinstance(error, ApiError) and error.fatal:
            raise error
        raise UsageError(f"cannot fetch workflow {workflow_id}: {error}") from error
    nodes = tuple(workflow_fields(graph))
    return Inspected("workflow", Target("workflow", workflow_id, None, f"workflow {workflow_id}"),
                     "main", nodes)  # fmt: skip


def _app(app_id: str, client: Client) -> Inspected:
    try:
        info = client.app_fields(app_id)
    except ApiError as exc:
        if exc.fatal:  # a refused key, an unreachable server: said as they are
            raise
        raise UsageError(f"cannot read the fields of AI app {app_id}: {exc}") from exc
    label = f"AI app {app_id} ({info.name})" if info.name else f"AI app {app_id}"
    return Inspected("app", Target("app", app_id, None, label), info.name or "app",
                     app_nodes(info))  # fmt: skip


def app_nodes(info: AppInfo) -> tuple[NodeFields, ...]:
    """The app's fields grouped by node, in the order the API lists them."""
    grouped: dict[str, tuple[str, list[Field]]] = {}
    for item in info.fields:
        value, kind, use = app_value(item.field_type, item.field_value)
        entry = grouped.setdefault(item.node_id, (item.node_name, []))
        entry[1].append(Field(item.field_name, value, kind, use, item.description))
    return tuple(NodeFields(nid, name, "", tuple(fs)) for nid, (name, fs) in grouped.items())


def _local(path: Path) -> Inspected:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise UsageError(f"{path}: file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{path}: not JSON: {exc}") from exc
    graph = workflow_nodes(data)
    if graph is None:
        raise UsageError(
            f"{path}: not an API-format workflow ({{node id: {{class_type, inputs}}}}); "
            "in ComfyUI use Workflow > Export (API)"
        )
    cloud_id = path.stem if _ID.match(path.stem) else NO_ID
    relpath = Path(os.path.relpath(path.resolve(), Path.cwd())).as_posix()
    label = str(path)
    if cloud_id == NO_ID:
        label += "; set workflow: to its id on RunningHub (the number in its URL) to run it"
    return Inspected("file", Target("workflow", cloud_id, relpath, label), path.stem,
                     tuple(workflow_fields(graph)))  # fmt: skip


def table(found: Inspected) -> str:
    """One line per field (a node's id, class and title on its first line), links left out."""
    head = {"workflow": "workflow", "app": "AI app", "file": "workflow file"}[found.source]
    title = f"{head} {found.target.workflow_file or found.target.id}"
    if found.source == "app" and found.name:
        title += f" ({found.name})"
    count = sum(len(n.fields) for n in found.nodes)
    rows = [("node", "class", "title", "field", "type", "value")]
    for node in found.nodes:
        first = (node.id, node.class_type, node.title)
        if not node.fields:
            rows.append((*first, "-", "", ""))
        for number, item in enumerate(node.fields):
            shown = _clip(json.dumps(item.value, ensure_ascii=False))
            rows.append((*(first if number == 0 else ("", "", "")), item.name, item.type, shown))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "  " + row[5]
        for row in rows
    ]
    summary = f"{title}: {len(found.nodes)} nodes, {count} editable fields"
    return "\n".join([summary, "", *(line.rstrip() for line in lines)])


def _clip(text: str) -> str:
    return text if len(text) <= VALUE_WIDTH else text[: VALUE_WIDTH - 1] + "…"

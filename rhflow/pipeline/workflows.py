"""Workflow JSON (ComfyUI API format): where it comes from, and checking overrides against it.

Sources implement ``WorkflowSource.get(workflow_id) -> Mapping | None``. ``CachedWorkflows``
asks RunningHub (``client.get_workflow_json``) once per id and keeps the answer on disk under
``$XDG_CACHE_HOME/rhflow/workflows``. The check functions turn what would be RunningHub's 803
``APIKEY_INVALID_NODE_INFO`` into a local message naming the node, the field and what exists.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from rhflow.atomic import write_atomic
from rhflow.pipeline.schema import did_you_mean

_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class WorkflowSource(Protocol):
    """Anything that can produce a workflow's API-format JSON by id (None when unknown)."""

    def get(self, workflow_id: str) -> Mapping[str, Any] | None: ...


class _WorkflowClient(Protocol):
    def get_workflow_json(self, workflow_id: str) -> Any: ...


#: How long a cached workflow is trusted before it is fetched again (workflows are edited on
#: the website; a stale copy would refuse valid overrides or let wrong ones through).
MAX_AGE = 24 * 3600.0


def default_cache_dir(server: str | None = None) -> Path:
    """``$XDG_CACHE_HOME/rhflow/workflows[/<server host>]`` (``~/.cache`` by default)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rhflow"
    folder = base / "workflows"
    host = urlsplit(server).netloc if server else ""
    return folder / re.sub(r"[^A-Za-z0-9_.-]", "_", host) if host else folder


class CachedWorkflows:
    """Workflow JSON fetched through ``client`` and cached on disk per server; any client
    error -> None. A copy older than ``max_age`` seconds is fetched again (the old copy is used
    if that fails). ``persist=False`` keeps answers in memory only (for throwaway servers)."""

    def __init__(
        self,
        client: _WorkflowClient,
        cache_dir: str | Path | None = None,
        *,
        max_age: float = MAX_AGE,
        persist: bool = True,
    ) -> None:
        self._client = client
        server = getattr(client, "base_url", None)
        self._dir = Path(cache_dir) if cache_dir is not None else default_cache_dir(server)
        self._max_age = max_age
        self._persist = persist
        self._memory: dict[str, Mapping[str, Any] | None] = {}
        #: Why a workflow could not be fetched, by id (the exception the client raised).
        self.errors: dict[str, Exception] = {}
        #: A refused key or an unreachable server: asking again for other ids would only wait.
        self._stopped: Exception | None = None

    def __repr__(self) -> str:
        return f"CachedWorkflows(cache_dir={str(self._dir)!r})"

    def get(self, workflow_id: str) -> Mapping[str, Any] | None:
        if not _SAFE_ID.match(workflow_id):
            self.errors[workflow_id] = ValueError(f"'{workflow_id}' is not a workflow id")
            return None
        if workflow_id not in self._memory:
            self._memory[workflow_id] = self._lookup(workflow_id)
        return self._memory[workflow_id]

    def _lookup(self, workflow_id: str) -> Mapping[str, Any] | None:
        path = self._dir / f"{workflow_id}.json"
        cached = self._read(path) if self._persist else None
        if cached is not None and _age(path) < self._max_age:
            return cached
        if self._stopped is not None:
            if cached is None:
                self.errors[workflow_id] = self._stopped
            return cached
        try:
            fetched = self._client.get_workflow_json(workflow_id)
        except Exception as exc:  # only "not known here" (or: keep the old copy); see errors
            if getattr(exc, "fatal", False):
                self._stopped = exc
            if cached is None:
                self.errors[workflow_id] = exc
            return cached
        graph = workflow_nodes(fetched) if fetched is not None else None
        if graph is None:
            if cached is None:
                self.errors[workflow_id] = ValueError("the server's answer is not a workflow")
            return cached
        self._keep(workflow_id, graph)
        return graph

    def remember(self, workflow_id: str, fetched: Any) -> None:
        """Keep ``fetched``, the server's answer for ``workflow_id`` just now (the lock check
        fetches every locked workflow fresh): the overrides are checked against the same copy
        and the workflow is not asked for twice."""
        graph = workflow_nodes(fetched) if fetched is not None else None
        if graph is not None and _SAFE_ID.match(workflow_id):
            self._memory[workflow_id] = graph
            self._keep(workflow_id, graph)

    def _keep(self, workflow_id: str, graph: Mapping[str, Any]) -> None:
        if self._persist:
            with contextlib.suppress(OSError):  # a cache that cannot be written is only slower
                # in the server's order: rhflow inspect shows fields as the workflow lists them
                write_atomic(
                    self._dir / f"{workflow_id}.json",
                    json.dumps(graph, ensure_ascii=False).encode(),
                )

    @staticmethod
    def _read(path: Path) -> dict[str, Any] | None:
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return cached if isinstance(cached, dict) else None


def why_unchecked(kind: str, workflow_id: str, workflows: WorkflowSource | None) -> str:
    """Why the overrides of a step targeting ``kind`` ``workflow_id`` had no graph to be
    checked against, with what would let them be checked."""
    if kind != "workflow":
        return (
            "rhflow cannot read an AI app's nodes; RunningHub checks them when the task is "
            "created (try one task with --limit 1)"
        )
    offline = "add workflow_file: (the workflow's API-format JSON) to check them offline"
    if workflows is None:
        return f"no API key to fetch workflow {workflow_id} (set RH_API_KEY), or {offline}"
    error = getattr(workflows, "errors", {}).get(workflow_id)
    if error is None:
        return f"workflow {workflow_id} could not be fetched; {offline}"
    name = getattr(error, "name", "")
    if name == "WORKFLOW_NOT_EXISTS":
        return f"the server does not know workflow {workflow_id} ({error}); check the id"
    if getattr(error, "fatal", False) and name != "UNREACHABLE":
        return f"the server refused the request ({error}); check RH_API_KEY, or {offline}"
    return f"workflow {workflow_id} could not be fetched: {error}; {offline}"


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return float("inf")


def workflow_nodes(data: Any) -> dict[str, Any] | None:
    """The node table of an API-format workflow (also accepted: a JSON string of one, or
    ``{"prompt": {...}}``); None if ``data`` is not one."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            return None
    if isinstance(data, Mapping) and "prompt" in data:
        return workflow_nodes(data["prompt"])
    if not isinstance(data, Mapping) or not data:
        return None
    if not all(
        isinstance(v, Mapping) and isinstance(v.get("inputs", {}), Mapping) for v in data.values()
    ):
        return None
    return {str(k): v for k, v in data.items()}


def _label(node_id: str, node: Mapping[str, Any]) -> str:
    title = (node.get("_meta") or {}).get("title")
    kind = node.get("class_type", "?")
    return f'{node_id} "{title}" ({kind})' if title and title != kind else f"{node_id} ({kind})"


def resolve_node(nodes: Mapping[str, Any], key: str) -> str:
    """The node id for ``key`` (an id or a unique ``_meta.title``); LookupError lists the nodes."""
    if key in nodes:
        return key
    titled = [nid for nid, node in nodes.items() if (node.get("_meta") or {}).get("title") == key]
    if len(titled) == 1:
        return titled[0]
    if titled:
        raise LookupError(
            f"title '{key}' names several nodes ({', '.join(titled)}); use the node id"
        )
    listing = ", ".join(_label(nid, nodes[nid]) for nid in sorted(nodes, key=id_order))
    raise LookupError(f"node '{key}' is not in the workflow; nodes are: {listing}")


def id_order(node_id: str) -> tuple[int, str]:
    """Sort key: numeric node ids in numeric order, then the others."""
    return (int(node_id), "") if node_id.isdigit() else (1 << 60, node_id)


def check_field(nodes: Mapping[str, Any], node_id: str, field: str) -> str | None:
    """A message if ``field`` is not an input of the node, or is a link to another node."""
    node = nodes[node_id]
    inputs = node.get("inputs") or {}
    if field not in inputs:
        fields = ", ".join(sorted(inputs)) or "none"
        hint = did_you_mean(field, inputs)
        return f"node {_label(node_id, node)} has no field '{field}'{hint}; fields are: {fields}"
    original = inputs[field]
    if is_link(original):
        return (
            f"field '{field}' of node {node_id} is a link from node {original[0]}, not a value; "
            f"override a field of node {original[0]} instead"
        )
    return None


def check_type(nodes: Mapping[str, Any], node_id: str, field: str, value: Any) -> str | None:
    """A message if ``value`` does not have the type of the field's value in the workflow."""
    original = (nodes[node_id].get("inputs") or {}).get(field)
    expected = _kind(original)
    if expected is None or _kind(value) == expected:
        return None
    shown = json.dumps(value, ensure_ascii=False, default=str)
    return (
        f"field '{field}' of node {node_id} holds {_ARTICLE[expected]} in the workflow "
        f"({json.dumps(original, ensure_ascii=False)}), but the value is {shown}; "
        f"give {_ARTICLE[expected]}"
    )


_ARTICLE = {"number": "a number", "boolean": "a boolean", "string": "a string"}


def _kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def is_link(value: Any) -> bool:
    """``["4", 0]``: an input fed by another node's output, not a value."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], (str, int))
        and isinstance(value[1], int)
    )

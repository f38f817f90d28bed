"""Frozen values handed from stage to stage: the loaded Pipeline and the planned TaskGraph.

Nothing here does I/O. The planner builds a TaskGraph from a Pipeline; the executor reads only
the TaskGraph (and calls back into the planner to render what depends on upstream outputs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

# --------------------------------------------------------------------------------------------
# Task graph (planner -> executor). This part is the contract between the two stages.
# --------------------------------------------------------------------------------------------

TargetKind = Literal["workflow", "app", "quick_app"]


@dataclass(frozen=True, slots=True)
class Target:
    """What a task runs on RunningHub.

    ``kind`` "workflow": ``/task/openapi/create`` with ``workflowId=id`` (and the whole graph as
    ``workflow`` when ``workflow_json`` is set); "app": ``/task/openapi/ai-app/run`` with
    ``webappId=id``; "quick_app": ``/task/openapi/quick-ai-app/run`` with ``quick_create_code``.
    """

    kind: TargetKind
    id: str
    workflow_json: Mapping[str, Any] | None = None
    quick_create_code: str | None = None


@dataclass(frozen=True, slots=True)
class FileInput:
    """A local file to upload before the task; its uploaded name replaces
    ``node_info_list[index]["fieldValue"]``."""

    index: int
    path: Path
    sha256: str


@dataclass(frozen=True, slots=True)
class DeferredValue:
    """A value that depends on upstream outputs (``{{ needs.<step>.outputs[0] }}``): rendered by
    ``rhflow.planner.resolve`` when the upstream tasks have finished, into
    ``node_info_list[index]["fieldValue"]``."""

    index: int
    template: str


@dataclass(frozen=True, slots=True)
class PlannedTask:
    """One RunningHub task to run.

    ``id`` is stable: a hash of the step, the target (id or JSON), the rendered overrides, the
    contents of input files and the upstream task ids. It keys resume and caching.
    ``node_info_list`` is what will be sent, as ``{"nodeId", "fieldName", "fieldValue"}`` dicts;
    entries named by ``files`` and ``deferred`` hold placeholders until run time.
    ``needs`` maps each upstream step name to the id of the upstream task this task consumes.
    ``context`` is the template context (params, vars, step) used again at run time for
    deferred values and output file names.
    """

    id: str
    step: str
    params: Mapping[str, Any]
    target: Target
    node_info_list: tuple[Mapping[str, Any], ...]
    needs: Mapping[str, str] = field(default_factory=dict)
    files: tuple[FileInput, ...] = ()
    deferred: tuple[DeferredValue, ...] = ()
    outputs: str = "{{ step }}-{{ task }}-{{ index }}.{{ ext }}"
    retries: int = 0
    timeout: float | None = None
    instance_type: str | None = None
    add_metadata: bool | None = None
    use_personal_queue: bool | None = None
    webhook_url: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)

    @property
    def upstream_ids(self) -> tuple[str, ...]:
        return tuple(self.needs.values())


@dataclass(frozen=True, slots=True)
class TaskGraph:
    """The planned tasks of one pipeline, upstream before downstream, in a deterministic order."""

    pipeline: str
    pipeline_hash: str
    source: Path
    output_dir: Path
    concurrency: int
    tasks: tuple[PlannedTask, ...]
    warnings: tuple[str, ...] = ()

    def task(self, task_id: str) -> PlannedTask:
        for task in self.tasks:
            if task.id == task_id:
                return task
        raise KeyError(task_id)

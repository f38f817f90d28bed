"""Frozen values handed from stage to stage: the loaded Pipeline and the planned TaskGraph.

Nothing here does I/O. The planner builds a TaskGraph from a Pipeline; the executor reads only
the TaskGraph (and calls back into the planner to render what depends on upstream outputs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

#: Length of a task id: hex digits of a sha256 of what the task asks for.
ID_LENGTH = 16


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
    ``content_hash`` is the sha256 of the server's copy (its canonical ``getJsonApiFormat``
    JSON, or an AI app's node list) when known from ``rhflow.lock`` or fetched for the run.
    """

    kind: TargetKind
    id: str
    workflow_json: Mapping[str, Any] | None = None
    quick_create_code: str | None = None
    content_hash: str | None = None


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
    ``rhflow.planning.planner.resolve`` when the upstream tasks have finished, into
    ``node_info_list[index]["fieldValue"]``."""

    index: int
    template: str


@dataclass(frozen=True, slots=True)
class PlannedTask:
    """One RunningHub task to run.

    ``id`` is stable: a hash of the step, the target (id and its JSON's hash: the local
    ``workflow_file``, else the server's copy when known), the rendered overrides, the
    contents of input files and the upstream task ids. It keys resume and caching.
    ``legacy_id`` is the id the task had before the server copy's hash was known (set only when
    that hash is part of ``id``), so that a folder run before ``rhflow.lock`` still resumes.
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
    legacy_id: str | None = None

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


# --------------------------------------------------------------------------------------------
# Pipeline (loader -> planner): a validated pipeline file with defaults filled in.
# --------------------------------------------------------------------------------------------

DEFAULT_RETRIES = 2
DEFAULT_TIMEOUT = 1800.0
DEFAULT_OUTPUTS = "{{ step }}/{{ task }}-{{ index }}.{{ ext }}"
DEFAULT_CONCURRENCY = 4


@dataclass(frozen=True, slots=True)
class Where:
    """A position in a pipeline file, for messages: ``FILE:LINE:COL: path``."""

    file: str
    line: int
    col: int
    path: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.path}"


@dataclass(frozen=True, slots=True)
class FileRef:
    """A ``{file: path}`` value: a local file uploaded before the task. ``missing`` marks a
    file that was not there when a lenient load (``rhflow validate``) read the pipeline; its
    ``sha256`` then stands in for the contents to come."""

    path: Path
    relpath: str
    sha256: str
    missing: bool = False


@dataclass(frozen=True, slots=True)
class Override:
    """One ``nodeInfoList`` entry to send: ``value`` is a plain value, a template string or a
    FileRef; ``deferred`` marks a template that reads ``needs`` (rendered at run time)."""

    node_id: str
    field: str
    value: Any
    where: Where
    deferred: bool = False


@dataclass(frozen=True, slots=True)
class Sweep:
    """A step's own combinations: the product of ``axes`` (each a tuple of values), of ``zips``
    (each a tuple of parameter dicts varying together) and of ``rows``; then ``exclude`` drops
    combinations matching every key of an entry, and ``include`` appends combinations."""

    axes: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    zips: tuple[tuple[Mapping[str, Any], ...], ...] = ()
    include: tuple[Mapping[str, Any], ...] = ()
    exclude: tuple[Mapping[str, Any], ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        names = [name for name, _ in self.axes]
        for group in self.zips:
            if group:
                names.extend(k for k in group[0] if k not in names)
        return tuple(names)


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a pipeline, defaults applied."""

    name: str
    target: Target
    workflow_json: Mapping[str, Any] | None
    sweep: Sweep
    overrides: tuple[Override, ...]
    needs: tuple[str, ...] = ()
    outputs: str = DEFAULT_OUTPUTS
    retries: int = DEFAULT_RETRIES
    timeout: float = DEFAULT_TIMEOUT
    instance_type: str | None = None
    add_metadata: bool | None = None
    use_personal_queue: bool | None = None
    webhook_url: str | None = None
    where: Where | None = None
    outputs_where: Where | None = None  # where ``outputs`` (or its default) is written


@dataclass(frozen=True, slots=True)
class Pipeline:
    """A loaded pipeline: steps in a stable topological order (upstream first)."""

    name: str
    source: Path
    output_dir: Path
    concurrency: int
    vars: Mapping[str, Any]
    steps: tuple[Step, ...]
    hash: str

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)

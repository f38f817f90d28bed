"""Pure: Pipeline -> TaskGraph. No network, no clock, no files; deterministic order and ids.

Each step's own combinations come from its sweep (``expand_sweep``); a step with ``needs`` gets
one task per combination of upstream tasks that agree on their shared parameters (a natural
join), times its own combinations. Parameters carry over from upstream; the step's own win on
a name clash. Task ids hash the step, the target, the rendered request, input file contents,
deferred templates, the parameters and the upstream task ids.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from rhflow.errors import ConfigError, PlanError, Problem, UsageError
from rhflow.model import (
    ID_LENGTH,
    DeferredValue,
    FileInput,
    FileRef,
    Override,
    Pipeline,
    PlannedTask,
    Step,
    TaskGraph,
    Where,
)
from rhflow.pipeline.paths import check_output_path
from rhflow.pipeline.render import RenderError, compile_template, is_template, render_text
from rhflow.pipeline.sandbox import limits as template_limits_now
from rhflow.pipeline.sweeps import expand_sweep, sweep_size
from rhflow.pipeline.yamlfile import parse_assignments
from rhflow.planning.overrides import TemplateField
from rhflow.planning.overrides import canonical as _canonical
from rhflow.planning.overrides import canonical_params as _canonical_params

#: Most combinations one step's sweep may have (without --limit).
MAX_COMBINATIONS = 2_000_000
#: Most tasks a pipeline may plan (``--max-tasks``); counted before any task is made.
MAX_TASKS = 100_000
_DUPLICATES_SHOWN = 4


# -- command-line helpers --------------------------------------------------------------------


# -- sweeps ----------------------------------------------------------------------------------


# -- planning --------------------------------------------------------------------------------


def plan(
    pipeline: Pipeline,
    *,
    limit: int | None = None,
    only: Mapping[str, Any] | Iterable[str] | None = None,
    max_tasks: int = MAX_TASKS,
) -> TaskGraph:
    """Expand ``pipeline`` into its TaskGraph; PlanError for an empty sweep, a bad template or
    more than ``max_tasks`` tasks (counted before they are made)."""
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be at least 1, got {limit}")
    if max_tasks < 1:
        raise UsageError(f"--max-tasks must be at least 1, got {max_tasks}")
    wanted = _only(pipeline, only)
    tasks: dict[str, list[PlannedTask]] = {}
    warnings: list[str] = []
    cap = _Cap(max_tasks)
    legacy: dict[str, str] = {}  # task id -> its id without the server copy's hash
    with without_cycle_collection():
        for step in pipeline.steps:
            maker = _TaskMaker(pipeline, step, legacy, cap)
            tasks[step.name] = _plan_step(maker, tasks, limit, wanted, cap)
            warnings += _duplicates(step.name, maker.requests.values())
        problems = _check_outputs(pipeline.steps, tasks)
    if problems:
        raise ConfigError(problems)
    flat = tuple(task for step in pipeline.steps for task in tasks[step.name])
    return TaskGraph(
        pipeline=pipeline.name,
        pipeline_hash=pipeline.hash,
        source=pipeline.source,
        output_dir=pipeline.output_dir,
        concurrency=pipeline.concurrency,
        tasks=flat,
        warnings=tuple(warnings),
    )


@contextlib.contextmanager
def without_cycle_collection() -> Iterator[None]:
    """Python's cycle collector paused inside the block (as it was after it). Planning makes a
    few objects per task and no reference cycles, yet the collector kept walking the growing
    list of tasks: a fifth of the time of 100,000 tasks and a third of 1,000,000 (its passes
    over the oldest objects grow with their number, so planning grew faster than linearly)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


#: Problems shown per step for output names, before "and N more".
_NAMES_SHOWN = 10
#: What an output name is checked with before the run knows the real index and extension.
_SAMPLE_OUTPUT = {"index": 0, "ext": "png", "node_id": "9"}


def _check_outputs(steps: Sequence[Step], tasks: Mapping[str, list[PlannedTask]]) -> list[Problem]:
    """Every task's first output name (index 0, ext png), rendered and checked: names that are
    absolute, climb out, hold NUL, are too long, land in rhflow's own files, or that two tasks
    share; a problem per task, at the ``outputs`` template's line."""
    problems: list[Problem] = []
    seen: dict[str, PlannedTask] = {}
    for step in steps:
        where = step.outputs_where or step.where or Where(str(step.name), 1, 1, "")
        found: list[str] = []
        for task in tasks[step.name]:
            message = _name_problem(step, task, seen)
            if message:
                found.append(message)
        more = len(found) - _NAMES_SHOWN
        if more > 0:
            found[_NAMES_SHOWN:] = [f"and {more:,} more tasks of step '{step.name}' like these"]
        problems += [Problem(where.file, where.line, where.col, where.path, m) for m in found]
    return problems


def _name_problem(step: Step, task: PlannedTask, seen: dict[str, PlannedTask]) -> str:
    """What is wrong with ``task``'s output name, or ""; records the name in ``seen``."""
    context = _with(task.context, {**_SAMPLE_OUTPUT, "task": task.id[:8]})
    try:
        name = check_output_path(render_text(step.outputs, context))
    except (RenderError, PlanError) as exc:
        return f"task {task.id} ({_params_text(task)}): {exc}"
    other = seen.setdefault(name.casefold(), task)
    if other is task:
        return ""
    whose = "" if other.step == task.step else f" of step '{other.step}'"
    return (
        f"tasks {other.id}{whose} and {task.id} would both write '{name}'; add {{{{ task }}}} or "
        "a parameter that differs to its outputs template"
    )


def _params_text(task: PlannedTask) -> str:
    text = ", ".join(f"{k}={v}" for k, v in task.params.items()) or "no parameters"
    return text if len(text) <= 80 else text[:77] + "..."


def _only(pipeline: Pipeline, only: Mapping[str, Any] | Iterable[str] | None) -> dict[str, Any]:
    if not only:
        return {}
    wanted = dict(only) if isinstance(only, Mapping) else parse_assignments(only, option="--only")
    known = {name for step in pipeline.steps for name in _all_names(step)}
    for key in wanted:
        if key not in known:
            names = ", ".join(sorted(known)) or "none"
            raise UsageError(
                f"--only {key}=...: no step has a parameter '{key}'; parameters are: {names}"
            )
    return wanted


def _all_names(step: Step) -> set[str]:
    names = set(step.sweep.names)
    for entry in step.sweep.include:
        names.update(entry)
    return names


def _keep(params: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    for key, value in wanted.items():
        if key in params and params[key] != value and str(params[key]) != str(value):
            return False
    return True


class _Cap:
    """The task cap (``--max-tasks``) and the tasks planned so far."""

    def __init__(self, max_tasks: int) -> None:
        self.max_tasks = max_tasks
        self.planned = 0
        self.rendered = 0  # characters rendered by templates, over every task
        self.total = template_limits_now().total

    def check(self, step: Step, upstream: int, own: int, *, joining: str = "") -> None:
        """PlanError if ``upstream`` x ``own`` more tasks would pass the cap; ``joining``: the
        upstream step at which an unfinished join reached ``upstream`` combinations."""
        count = upstream * own
        if self.planned + count <= self.max_tasks:
            return
        where = f"{step.where}: " if step.where else ""
        if joining:
            what = f"would join {upstream:,} combinations of its needs by '{joining}' alone"
        elif step.needs:
            what = f"would make {count:,} tasks ({upstream:,} upstream combinations x {own:,})"
        else:
            what = f"would make {count:,} tasks"
        before = f", after {self.planned:,} in the steps before it" if self.planned else ""
        raise PlanError(
            f"{where}step '{step.name}' {what}{before}, more than --max-tasks "
            f"{self.max_tasks:,}; split the sweep, plan a part of it with --limit or --only, or "
            "raise --max-tasks"
        )

    def too_large(self, where: object) -> None:
        """PlanError: the values rendered so far (``rendered``) are past the ``total`` limit."""
        total = self.total
        if self.rendered > total:
            raise PlanError(
                f"{where}: template too large: the templates of this pipeline render more than "
                f"{total:,} characters together; raise it with --template-limit total=N"
            )

    def admit(self, step: Step, upstream: int, own: int) -> None:
        self.check(step, upstream, own)
        self.planned += upstream * own


def _plan_step(
    maker: _TaskMaker,
    done: Mapping[str, list[PlannedTask]],
    limit: int | None,
    wanted: Mapping[str, Any],
    cap: _Cap,
) -> list[PlannedTask]:
    step = maker.step
    size = sweep_size(step.sweep)
    if limit is None and not wanted and not step.needs:
        cap.check(step, 1, size)  # before a combination is listed
    if size > MAX_COMBINATIONS and limit is None:
        where = f"{step.where}: " if step.where else ""
        raise PlanError(
            f"{where}step '{step.name}' has {size:,} combinations, more than {MAX_COMBINATIONS:,}; "
            "split the sweep or plan a part of it with --limit"
        )
    own = list(itertools.islice((c for c in expand_sweep(step.sweep) if _keep(c, wanted)), limit))
    if not own and not wanted:
        where = f"{step.where}: " if step.where else ""
        raise PlanError(
            f"{where}the sweep of step '{step.name}' is empty; check exclude and the lists"
        )
    rows = _join(step, done, cap, len(own))
    cap.admit(step, len(rows), len(own))
    result = []
    alone = rows == [({}, {})]  # no upstream: each combination (a dict of its own) is the params
    for upstream_params, needs in rows:
        for combo in own:
            params = combo if alone else {**upstream_params, **combo}
            if not wanted or _keep(params, wanted):
                result.append(maker.make(params, needs))
    return result


_Row = tuple[dict[str, Any], dict[str, str]]


def _join(step: Step, done: Mapping[str, list[PlannedTask]], cap: _Cap, own: int) -> list[_Row]:
    """Combinations of upstream tasks that agree on every parameter they share (a hash join);
    PlanError through ``cap`` as soon as they are too many for the task cap."""
    rows: list[_Row] = [({}, {})]
    room = max(1, (cap.max_tasks - cap.planned) // max(own, 1))
    for number, name in enumerate(step.needs):
        index = _Index(done[name])
        joined: list[_Row] = []
        for position, (params, ids) in enumerate(rows):
            for task in index.matches(params):
                joined.append(({**params, **task.params}, {**ids, name: task.id}))
            if len(joined) > room:
                rest = sum(len(index.matches(p)) for p, _ in rows[position + 1 :])
                last = number == len(step.needs) - 1
                cap.check(step, len(joined) + rest, own, joining="" if last else name)
        rows = joined
    return rows


class _Index:
    """The tasks of an upstream step, found by the values of the parameters a row shares."""

    def __init__(self, tasks: list[PlannedTask]) -> None:
        self.tasks = tasks
        self.position = {task.id: number for number, task in enumerate(tasks)}
        self.by_keys: dict[frozenset[str], dict[tuple[str, ...], dict[Any, list[PlannedTask]]]]
        self.by_keys = {}
        for task in tasks:
            self.by_keys.setdefault(frozenset(task.params), {})

    def matches(self, params: Mapping[str, Any]) -> list[PlannedTask]:
        if not params:
            return self.tasks
        found: list[PlannedTask] = []
        for keys, indexes in self.by_keys.items():
            shared = tuple(sorted(keys.intersection(params)))
            index = indexes.get(shared)
            if index is None:
                index = indexes[shared] = {}
                for task in self.tasks:
                    if frozenset(task.params) == keys:
                        index.setdefault(_key(task.params, shared), []).append(task)
            found += index.get(_key(params, shared), [])
        if len(self.by_keys) > 1:  # in the upstream step's order, as a nested loop gives
            found.sort(key=lambda task: self.position[task.id])
        return found


def _key(params: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    """The values of ``names`` in ``params``, hashable (lists and mappings as canonical JSON)."""
    values = tuple(params[name] for name in names)
    try:
        hash(values)
    except TypeError:
        return _canonical(values)
    return values


class _TaskMaker:
    """Builds the tasks of one step; per-step work (target hash, compiled templates, fixed
    entries, file inputs, deferred values) done once.

    ``requests`` groups the ids of the tasks made so far by a digest of what each would send
    (overrides, input files, upstream tasks), taken from the text its id is hashed from: the
    id of the one task that sends it, or a list of the ids of several.
    """

    def __init__(self, pipeline: Pipeline, step: Step, legacy: dict[str, str], cap: _Cap) -> None:
        self.pipeline = pipeline
        self.legacy = legacy
        self.cap = cap
        self.step = step
        target = step.target
        workflow_hash = None
        if target.workflow_json is not None:
            workflow_hash = _digest(_canonical(target.workflow_json))
        target_key = [target.kind, target.id, workflow_hash, target.quick_create_code]
        self.prefix = f"[{_canonical(step.name)},{_canonical(target_key)},"
        # The server copy's hash (rhflow.lock) counts only where no local file is sent; the id
        # the task had without it stays known, so folders run before the lock still resume.
        self.legacy_prefix = self.prefix
        if workflow_hash is None and target.content_hash is not None:
            target_key[2] = target.content_hash
            self.prefix = f"[{_canonical(step.name)},{_canonical(target_key)},"
        self.vars = dict(pipeline.vars)
        self.requests: dict[bytes, str | list[str]] = {}
        self.fields, self.files, self.deferred = _fields(step.overrides)
        # what is sent besides the entries: _canonical([...files' sha256], [...deferred])
        self.shas = _canonical([f.sha256 for f in self.files]) if self.files else "[]"
        templates = [d.template for d in self.deferred]
        self.templates = _canonical(templates) if templates else "[]"

    def make(self, params: dict[str, Any], needs: dict[str, str]) -> PlannedTask:
        step = self.step
        context = {**params, "params": params, "vars": self.vars, "step": step.name}
        node_info: list[dict[str, Any]] = []
        texts: list[str] = []  # each entry's canonical JSON
        cap = self.cap
        for field in self.fields:
            if isinstance(field, TemplateField):
                rendered = field.render(context)
                cap.rendered += rendered.size
                if cap.rendered > cap.total:
                    cap.too_large(field.override.where)
                texts.append(rendered.text)
                node_info.append(rendered.entry)
            else:  # a fixed entry: the same for every task
                texts.append(field[0])
                node_info.append(field[1])
        # what is sent (deferred templates are in node_info too), then the id's text:
        # _canonical([step, target, node_info, files, deferred, params, needs])
        sent = f"[[{','.join(texts)}],{self.shas},{self.templates}]"
        needs_text = _canonical(sorted(needs.items())) if needs else "[]"
        params_text = _canonical_params(params)
        rest = f"{sent[1:-1]},{params_text},{needs_text}]"
        task_id = _digest(f"{self.prefix}{rest}")
        short_id = task_id[:ID_LENGTH]
        legacy_id = self._legacy_id(sent, params_text, needs)
        if legacy_id is not None:
            self.legacy[short_id] = legacy_id
        request = hashlib.sha256(f"{sent}{needs_text}".encode()).digest()
        first = self.requests.setdefault(request, short_id)  # a list only for a duplicate
        if isinstance(first, list):
            first.append(short_id)
        elif first is not short_id:
            self.requests[request] = [first, short_id]
        return PlannedTask(
            id=short_id,
            step=step.name,
            params=params,
            target=step.target,
            node_info_list=tuple(node_info),
            needs=needs,
            files=self.files,
            deferred=self.deferred,
            outputs=step.outputs,
            retries=step.retries,
            timeout=step.timeout,
            instance_type=step.instance_type,
            add_metadata=step.add_metadata,
            use_personal_queue=step.use_personal_queue,
            webhook_url=step.webhook_url,
            context=_Context(params, self.vars, step.name),
            legacy_id=legacy_id,
        )

    def _legacy_id(self, sent: str, params_text: str, needs: dict[str, str]) -> str | None:
        """The id without any server copy's hash (its own or an upstream task's); None when
        that is the id itself."""
        old_needs = {step: self.legacy.get(up, up) for step, up in needs.items()}
        if self.legacy_prefix == self.prefix and old_needs == needs:
            return None
        needs_text = _canonical(sorted(old_needs.items())) if old_needs else "[]"
        rest = f"{sent[1:-1]},{params_text},{needs_text}]"
        return _digest(f"{self.legacy_prefix}{rest}")[:ID_LENGTH]


class _Context(Mapping[str, Any]):
    """A task's template context, ``{**params, "params": params, "vars": vars, "step": step}``,
    as a mapping over the three: a dict of its own per task held a quarter of a planned task's
    memory. (A parameter cannot be named ``params``, ``vars`` or ``step``.)"""

    __slots__ = ("_params", "_step", "_vars")

    def __init__(self, params: Mapping[str, Any], vars_: Mapping[str, Any], step: str) -> None:
        self._params = params
        self._vars = vars_
        self._step = step

    def __getitem__(self, key: str) -> Any:
        if key in _CONTEXT_NAMES:
            return self._params if key == "params" else self._vars if key == "vars" else self._step
        return self._params[key]

    def __iter__(self) -> Iterator[str]:
        yield from self._params
        yield from _CONTEXT_NAMES

    def __len__(self) -> int:
        return len(self._params) + len(_CONTEXT_NAMES)

    def __contains__(self, key: object) -> bool:
        return key in _CONTEXT_NAMES or key in self._params

    def __repr__(self) -> str:
        return repr(dict(self))

    def merged(self, extra: Mapping[str, Any]) -> dict[str, Any]:
        """``{**self, **extra}``, built without a call per key."""
        params = self._params
        return {**params, "params": params, "vars": self._vars, "step": self._step, **extra}


def _with(context: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``{**context, **extra}``: a task's context with the names a template adds."""
    if type(context) is _Context:
        return context.merged(extra)
    return {**context, **extra}


_CONTEXT_NAMES = ("params", "vars", "step")


#: An override as the task maker uses it: a template, or a fixed entry's canonical JSON and
#: the entry itself (one dict shared by every task: entries are read, never changed).
_Field = TemplateField | tuple[str, dict[str, Any]]


def _fields(
    overrides: Sequence[Override],
) -> tuple[list[_Field], tuple[FileInput, ...], tuple[DeferredValue, ...]]:
    """Each override as a _Field; the step's file inputs and deferred values."""
    fields: list[_Field] = []
    files: list[FileInput] = []
    deferred: list[DeferredValue] = []
    for index, override in enumerate(overrides):
        value = override.value
        if isinstance(value, FileRef):
            files.append(FileInput(index, value.path, value.sha256))
            value = f"<upload:{value.relpath}>"
        elif override.deferred:
            deferred.append(DeferredValue(index, value))
        elif is_template(value):
            fields.append(TemplateField(override))
            continue
        text = (
            f'{{"fieldName":{_canonical(override.field)},"fieldValue":{_canonical(value)},'
            f'"nodeId":{_canonical(override.node_id)}}}'
        )
        fields.append((text, {"nodeId": override.node_id, "fieldName": override.field,
                              "fieldValue": value}))  # fmt: skip
    return fields, tuple(files), tuple(deferred)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _duplicates(step: str, groups: Iterable[str | list[str]]) -> list[str]:
    """A warning for each group of more than one task (ids) that send the same request."""
    warnings = []
    for ids in groups:
        if isinstance(ids, list):
            shown = ", ".join(ids[:_DUPLICATES_SHOWN]) + (
                ", ..." if len(ids) > _DUPLICATES_SHOWN else ""
            )
            warnings.append(
                f"step '{step}': {len(ids)} tasks send identical requests ({shown}); ComfyUI "
                "would serve all but the first from its cache. Vary the seed per task, e.g. "
                'a seed axis and nodes: {"3": {seed: "{{ seed }}"}}'
            )
    return warnings


# -- run time: values that depend on upstream outputs ---------------------------------------


def resolve(task: PlannedTask, needs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``task.node_info_list`` with every DeferredValue rendered against ``needs`` (step name ->
    object or mapping with outputs, urls, files, params, task_id); FileInput entries are left."""
    values = [dict(entry) for entry in task.node_info_list]
    if not task.deferred:
        return values
    context = _with(task.context, {"needs": needs})
    for item in task.deferred:
        try:
            values[item.index]["fieldValue"] = compile_template(item.template).render(context)
        except RenderError as exc:
            raise PlanError(
                f"task {task.id} of step '{task.step}': {exc} in {item.template!r}"
            ) from exc
    return values


def output_name(task: PlannedTask, *, index: int, ext: str, node_id: str, task_short: str) -> str:
    """The relative POSIX path of an output, from the step's ``outputs`` template."""
    context = _with(
        task.context, {"index": index, "ext": ext, "node_id": node_id, "task": task_short}
    )
    try:
        name = render_text(task.outputs, context)
    except RenderError as exc:
        raise PlanError(f"outputs of step '{task.step}': {exc}") from exc
    return check_output_path(name)

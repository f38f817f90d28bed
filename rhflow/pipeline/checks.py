"""The meaning checks of a pipeline file: a schema-valid Document -> a checked Pipeline.

``build_pipeline`` checks steps, needs, sweeps (:mod:`rhflow.pipeline.sweeps`), templates, local
files and, where the workflow JSON is known, every override against it; then it renders every
template once with a sample combination, so a wrong name or type is reported at its line.
Every problem found goes into one ConfigError.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rhflow.errors import ConfigError, PlanError, Problem
from rhflow.model import (
    DEFAULT_CONCURRENCY,
    DEFAULT_OUTPUTS,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    FileRef,
    Override,
    Pipeline,
    Step,
    Target,
)
from rhflow.pipeline.files import MAX_DATA, MAX_INPUT, read_capped
from rhflow.pipeline.needs import order_steps, sample_needs
from rhflow.pipeline.paths import check_output_path
from rhflow.pipeline.render import RenderError, Template, compile_template, is_template, render_text
from rhflow.pipeline.schema import did_you_mean
from rhflow.pipeline.sweeps import SweepChecker, expand_sweep, unreadable
from rhflow.pipeline.workflows import (
    WorkflowSource,
    check_field,
    check_type,
    resolve_node,
    workflow_nodes,
)
from rhflow.pipeline.yamlfile import Document, dotted

_STEP_FIELDS = ("outputs", "retries", "timeout", "instance_type", "add_metadata",
                "use_personal_queue", "webhook_url")  # fmt: skip
_SAMPLE_OUTPUT = {"index": 0, "ext": "png", "node_id": "9", "task": "0123456789abcdef"}


def build_pipeline(
    doc: Document,
    path: Path,
    *,
    vars_: Mapping[str, Any],
    output: str | Path | None,
    concurrency: int | None,
    workflows: WorkflowSource | None,
    digest: str,
    skip: frozenset[str] = frozenset(),
    allow_missing_inputs: bool = False,
) -> Pipeline:
    """Check the meaning of a schema-valid document and build the Pipeline (steps upstream
    first); ConfigError lists every problem. Steps named in ``skip`` (which failed the schema)
    are left out, but still count as existing for ``needs``. With ``allow_missing_inputs`` an
    input file that does not exist yet is a ``FileRef(missing=True)``, not a problem."""
    builder = _Builder(doc, path, workflows)
    builder.allow_missing = allow_missing_inputs
    data = doc.data
    steps = {
        name: builder.step(name, raw, data.get("defaults") or {})
        for name, raw in data["steps"].items()
        if str(name) not in skip
    }
    order = builder.order(steps, known=[str(n) for n in data["steps"]])
    builder.sample_render([steps[n] for n in order], dict(vars_))
    if builder.problems:  # a file to fix anyway: its missing inputs are listed with the rest
        raise ConfigError([*builder.problems, *builder.missing])
    name = data.get("name") or path.stem
    return Pipeline(
        name=name,
        source=path,
        output_dir=Path(
            output if output is not None else data.get("output") or f"out/{name}"
        ).absolute(),
        concurrency=concurrency or data.get("concurrency") or DEFAULT_CONCURRENCY,
        vars=dict(vars_),
        steps=tuple(steps[n] for n in order),
        hash=digest,
    )


class _Builder(SweepChecker):
    def __init__(self, doc: Document, path: Path, workflows: WorkflowSource | None) -> None:
        super().__init__(doc, path)
        self.workflows = workflows
        self.allow_missing = False
        self.missing: list[Problem] = []  # inputs allowed missing, as the problems they were
        self.nodes: dict[str, Mapping[str, Any] | None] = {}

    # -- one step ----------------------------------------------------------------------------

    def step(self, name: str, raw: Mapping[str, Any], defaults: Mapping[str, Any]) -> Step:
        base: tuple[str | int, ...] = ("steps", name)
        target, nodes = self.target(base, raw)
        self.nodes[name] = nodes
        fields = {f: raw.get(f, defaults.get(f)) for f in _STEP_FIELDS}
        outputs = fields["outputs"] or DEFAULT_OUTPUTS
        origin = base if "outputs" in raw else ("defaults",)
        self.compile((*origin, "outputs"), outputs)
        needs = raw.get("needs") or ()
        needs = (needs,) if isinstance(needs, str) else tuple(needs)
        return Step(
            name=name,
            target=target,
            workflow_json=nodes,
            sweep=self.sweep(base, raw),
            overrides=self.overrides(base, raw, nodes, needs),
            needs=needs,
            outputs=outputs,
            retries=DEFAULT_RETRIES if fields["retries"] is None else fields["retries"],
            timeout=float(fields["timeout"] or DEFAULT_TIMEOUT),
            instance_type=fields["instance_type"],
            add_metadata=fields["add_metadata"],
            use_personal_queue=fields["use_personal_queue"],
            webhook_url=fields["webhook_url"],
            where=self.where(base),
            outputs_where=self.where((*origin, "outputs")),
        )

    def target(
        self, base: tuple[str | int, ...], raw: Mapping[str, Any]
    ) -> tuple[Target, Mapping[str, Any] | None]:
        if "quick_create_code" in raw:
            return Target(
                "quick_app", str(raw["app"]), quick_create_code=raw["quick_create_code"]
            ), None
        if "app" in raw:
            return Target("app", str(raw["app"])), None
        workflow_id = str(raw["workflow"])
        if "workflow_file" in raw:
            nodes = self.workflow_file((*base, "workflow_file"), raw["workflow_file"])
            return Target("workflow", workflow_id, workflow_json=nodes), nodes
        fetched = self.workflows.get(workflow_id) if self.workflows is not None else None
        return Target("workflow", workflow_id), workflow_nodes(fetched) if fetched else None

    def workflow_file(self, at: tuple[str | int, ...], relpath: str) -> Mapping[str, Any] | None:
        path = self.base / relpath
        try:
            nodes = workflow_nodes(json.loads(read_capped(path, MAX_DATA)))
        except OSError as exc:
            self.report(at, unreadable(relpath, exc))
            return None
        except ValueError as exc:
            self.report(at, f"{relpath} is not valid JSON: {exc}")
            return None
        if nodes is None:
            self.report(
                at, f"{relpath} is not an API-format workflow (export it with 'Save (API Format)')"
            )
        return nodes

    # -- overrides ---------------------------------------------------------------------------

    def overrides(
        self,
        base: tuple[str | int, ...],
        raw: Mapping[str, Any],
        nodes: Mapping[str, Any] | None,
        needs: tuple[str, ...],
    ) -> tuple[Override, ...]:
        entries: list[tuple[tuple[str | int, ...], str, str, Any]] = []
        for number, item in enumerate(raw.get("node_info_list") or []):
            at = (*base, "node_info_list", number)
            entries.append(
                ((*at, "fieldValue"), str(item["nodeId"]), item["fieldName"], item["fieldValue"])
            )
        for node_key, fields in (raw.get("nodes") or {}).items():
            for field_name, value in fields.items():
                entries.append(
                    ((*base, "nodes", str(node_key), field_name), str(node_key), field_name, value)
                )
        result: list[Override] = []
        seen: dict[tuple[str, str], str] = {}
        for at, node_key, field_name, value in entries:
            override = self.override(at, node_key, field_name, value, nodes, needs)
            if override is None:
                continue
            pair = (override.node_id, override.field)
            if pair in seen:
                self.report(
                    at,
                    f"node {pair[0]} field '{pair[1]}' is already set at {seen[pair]}; set it once",
                )
                continue
            seen[pair] = dotted(at)
            result.append(override)
        return tuple(result)

    def override(
        self,
        at: tuple[str | int, ...],
        node_key: str,
        field_name: str,
        value: Any,
        nodes: Mapping[str, Any] | None,
        needs: tuple[str, ...],
    ) -> Override | None:
        node_id = node_key
        if nodes is not None:
            try:
                node_id = resolve_node(nodes, node_key)
            except LookupError as exc:
                # at the node's key under nodes:, at the entry in node_info_list
                self.report(at[:-1], str(exc), at_key=at[-3] == "nodes")
                return None
            message = check_field(nodes, node_id, field_name)
            if message:
                self.report(at, message, at_key=at[-3] == "nodes")
                return None
            if isinstance(value, dict):
                message = check_type(nodes, node_id, field_name, "<uploaded file name>")
            elif not is_template(value):
                message = check_type(nodes, node_id, field_name, value)
            if message:
                self.report(at, message)
                return None
        if isinstance(value, dict):
            ref = self.file_ref(at, value["file"])
            return None if ref is None else Override(node_id, field_name, ref, self.where(at))
        deferred = False
        if is_template(value):
            template = self.compile(at, value)
            if template is not None:
                deferred = self.check_needs(at, template, needs)
        return Override(node_id, field_name, value, self.where(at), deferred)

    def file_ref(self, at: tuple[str | int, ...], relpath: str) -> FileRef | None:
        path = (self.base / relpath).absolute()
        try:
            digest = hashlib.sha256(read_capped(path, MAX_INPUT)).hexdigest()
        except FileNotFoundError as exc:
            if self.allow_missing:  # a file to come: validate warns, run and plan refuse
                self.missing.append(self.doc.problem((*at, "file"), unreadable(relpath, exc)))
                stand_in = hashlib.sha256(f"missing\0{relpath}".encode()).hexdigest()
                return FileRef(path, Path(relpath).as_posix(), stand_in, missing=True)
            self.report((*at, "file"), unreadable(relpath, exc))
            return None
        except OSError as exc:
            self.report((*at, "file"), unreadable(relpath, exc))
            return None
        return FileRef(path, Path(relpath).as_posix(), digest)

    def compile(self, at: tuple[str | int, ...], source: str) -> Template | None:
        try:
            return compile_template(source)
        except RenderError as exc:
            self.report(at, str(exc))
            return None

    def check_needs(
        self, at: tuple[str | int, ...], template: Template, needs: tuple[str, ...]
    ) -> bool:
        for name in sorted(template.needs - set(needs)):
            self.report(
                at, f"reads needs.{name} but '{name}' is not in this step's needs; add it to needs"
            )
        return "needs" in template.names

    # -- the whole pipeline ------------------------------------------------------------------

    def order(self, steps: Mapping[str, Step], known: list[str]) -> list[str]:
        graph: dict[str, tuple[str, ...]] = {}
        for name, step in steps.items():
            for number, need in enumerate(step.needs):
                if need not in known:
                    at = ("steps", name, "needs") + (
                        (number,) if isinstance(self.doc.data["steps"][name]["needs"], list) else ()
                    )
                    hint = did_you_mean(need, known)
                    self.report(at, f"unknown step '{need}'{hint}; steps are: {', '.join(known)}")
            graph[name] = tuple(n for n in step.needs if n in steps)
        try:
            return order_steps(graph)
        except ValueError as exc:
            first = str(exc).split(" -> ")[0]
            self.report(("steps", first, "needs"), f"steps depend on each other in a cycle: {exc}")
            return list(steps)

    def sample_render(self, steps: list[Step], vars_: dict[str, Any]) -> None:
        """Render every template once with the first combination, so undefined names, sandbox
        violations and value types are reported now, at the template's line."""
        samples: dict[str, dict[str, Any]] = {}
        built = {step.name for step in steps}
        for step in steps:
            own = next(iter(expand_sweep(step.sweep)), None)
            if own is None or any(n in built and n not in samples for n in step.needs):
                continue  # an empty sweep, upstream or here: planning reports it
            params: dict[str, Any] = {}
            for need in step.needs:
                params.update(samples.get(need, {}))
            params.update(own)
            samples[step.name] = params
            context = {**params, "params": params, "vars": vars_, "step": step.name}
            needs = sample_needs(step.needs, samples)
            reported = {p.path for p in self.problems}
            for override in step.overrides:
                if is_template(override.value) and override.where.path not in reported:
                    self.sample_override(
                        step,
                        override,
                        {**context, "needs": needs} if override.deferred else context,
                    )
            self.sample_outputs(step, {**context, **_SAMPLE_OUTPUT})

    def sample_override(self, step: Step, override: Override, context: Mapping[str, Any]) -> None:
        where = override.where
        try:
            value = compile_template(override.value).render(context)
        except RenderError as exc:
            message = str(exc) + _suggest_name(str(exc), context)
            self.problems.append(Problem(where.file, where.line, where.col, where.path, message))
            return
        nodes = self.nodes.get(step.name)
        if nodes is not None and not override.deferred:
            mismatch = check_type(nodes, override.node_id, override.field, value)
            if mismatch:
                self.problems.append(
                    Problem(where.file, where.line, where.col, where.path, mismatch)
                )

    def sample_outputs(self, step: Step, context: Mapping[str, Any]) -> None:
        at = (
            ("steps", step.name, "outputs")
            if "outputs" in self.doc.data["steps"][step.name]
            else ("defaults", "outputs")
        )
        if dotted(at) in {p.path for p in self.problems}:
            return  # its template does not compile: said once
        try:
            check_output_path(render_text(step.outputs, context))
        except RenderError as exc:
            self.report(at, str(exc) + _suggest_name(str(exc), context))
        except PlanError as exc:
            self.report(at, str(exc))


def _suggest_name(message: str, context: Mapping[str, Any]) -> str:
    """A "did you mean" for an undefined name or a missing ``vars`` key."""
    match = re.search(r"(?:'(\w+)' is not defined|no key '(\w+)')$", message)
    if not match:
        return ""
    if match[1]:
        return did_you_mean(match[1], context)
    return did_you_mean(match[2], context.get("vars") or {})

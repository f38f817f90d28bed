"""Pipeline files: YAML with line/column marks -> schema check -> a checked Pipeline.

The only module that imports yaml. ``load_pipeline`` reports every problem it finds at once, as
one ConfigError carrying ``Problem(file, line, col, path, message)`` entries; the shape comes
from ``schemas/pipeline.schema.json``, the meaning from ``_Builder`` (steps, needs, sweeps,
templates, local files and, where the workflow JSON is known, every override against it).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rhflow import schema
from rhflow.errors import ConfigError, PlanError, Problem, UsageError
from rhflow.model import (
    DEFAULT_CONCURRENCY,
    DEFAULT_OUTPUTS,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    FileRef,
    Override,
    Pipeline,
    Step,
    Sweep,
    Target,
    Where,
)
from rhflow.render import (
    BASE_NAMES,
    OUTPUT_NAMES,
    RenderError,
    Template,
    compile_template,
    is_template,
    render_text,
)
from rhflow.schema import did_you_mean
from rhflow.workflows import (
    WorkflowSource,
    check_field,
    check_type,
    resolve_node,
    workflow_nodes,
)

#: Most values one ``range`` axis may produce.
MAX_AXIS = 1_000_000
#: Names a sweep parameter cannot take: the template names rhflow provides.
RESERVED = BASE_NAMES | OUTPUT_NAMES

PathKey = tuple[str, ...]
_EMPTY_FILE = "the file is empty; a pipeline needs at least `version: 1` and `steps:`"


@dataclass(frozen=True, slots=True)
class Document:
    """Parsed YAML data with the 1-based (line, col) of every value and mapping key."""

    file: str
    data: Any
    marks: Mapping[PathKey, tuple[int, int]] = field(default_factory=dict)
    key_marks: Mapping[PathKey, tuple[int, int]] = field(default_factory=dict)

    def where(self, path: Iterable[str | int], *, at_key: bool = False) -> tuple[int, int]:
        """The position of ``path``'s value (or key), else of its nearest marked parent."""
        key = tuple(str(p) for p in path)
        if at_key and key in self.key_marks:
            return self.key_marks[key]
        while key not in self.marks and key:
            key = key[:-1]
        return self.marks.get(key, (1, 1))

    def problem(self, path: Iterable[str | int], message: str, *, at_key: bool = False) -> Problem:
        path = tuple(path)
        line, col = self.where(path, at_key=at_key)
        return Problem(self.file, line, col, dotted(path), message)


def dotted(path: Iterable[str | int]) -> str:
    """``("steps", "gen", "matrix", "seed")`` -> ``steps.gen.matrix.seed``; indices as ``[0]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def parse_document(text: str, file: str) -> tuple[Document, list[Problem]]:
    """Parse YAML text; duplicate keys are returned as problems, syntax errors raise ConfigError."""
    loader = yaml.SafeLoader(text)
    marks: dict[PathKey, tuple[int, int]] = {}
    key_marks: dict[PathKey, tuple[int, int]] = {}
    duplicates: list[tuple[PathKey, tuple[int, int]]] = []
    try:
        node = loader.get_single_node()
        if node is not None:  # before constructing, which flattens merge keys into the nodes
            _walk(node, (), marks, key_marks, duplicates, frozenset())
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = f"invalid YAML: {exc.problem or exc.context}"
        raise ConfigError([Problem(file, line, col, "", message)]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(file, 1, 1, "", f"invalid YAML: {exc}")]) from exc
    finally:
        loader.dispose()
    doc = Document(file, data, marks, key_marks)
    problems = [
        Problem(file, *mark, dotted(path), "duplicate key; each key may appear once")
        for path, mark in duplicates
    ]
    return doc, problems


def _walk(
    node: yaml.Node,
    path: PathKey,
    marks: dict[PathKey, tuple[int, int]],
    key_marks: dict[PathKey, tuple[int, int]],
    duplicates: list[tuple[PathKey, tuple[int, int]]],
    active: frozenset[int],
) -> None:
    marks.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
    if id(node) in active:  # a recursive alias
        return
    active = active | {id(node)}
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key_mark = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in seen:
                duplicates.append(((*path, key), key_mark))
            seen.add(key)
            key_marks.setdefault((*path, key), key_mark)
            _walk(value_node, (*path, key), marks, key_marks, duplicates, active)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, str(index)), marks, key_marks, duplicates, active)


def parse_value(text: str) -> Any:
    """A command-line value parsed as YAML (``3`` -> 3, ``[a, b]`` -> list, ``ink`` -> "ink")."""
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV (header line; numbers become numbers), JSONL or YAML (list of mappings) file.

    Raises ValueError with a message for malformed content, OSError if unreadable.
    """
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return [
            {k: _csv_cell(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(text))
        ]
    if suffix == ".jsonl":
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        try:
            rows = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"invalid YAML: {exc}") from exc
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError("expected a list of mappings, one per row")
    return rows


def _csv_cell(value: str | None) -> Any:
    if value is None:
        return ""
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value


def load_pipeline(
    path: str | Path,
    *,
    set_vars: Mapping[str, Any] | Iterable[str] = (),
    output: str | Path | None = None,
    concurrency: int | None = None,
    workflows: WorkflowSource | None = None,
) -> Pipeline:
    """Load, validate and check a pipeline file; ConfigError lists every problem found."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            [Problem(str(path), 1, 1, "", f"cannot read the file: {reason}")]
        ) from exc
    doc, problems = parse_document(text, str(path))
    if doc.data is None:
        raise ConfigError([*problems, Problem(str(path), 1, 1, "", _EMPTY_FILE)])
    issues = schema.check(doc.data)
    problems += [doc.problem(i.path, i.message, at_key=i.at_key) for i in issues]
    if any(len(i.path) < 2 or i.path[0] != "steps" for i in issues):
        raise ConfigError(problems)  # the file's frame is wrong: meaning checks would mislead
    overrides = _set_vars(set_vars, doc.data.get("vars") or {})
    digest = hashlib.sha256(text.encode())
    digest.update(
        json.dumps([overrides, str(output), concurrency], sort_keys=True, default=str).encode()
    )
    try:
        pipeline = build_pipeline(
            doc,
            path,
            vars_=overrides,
            output=output,
            concurrency=concurrency,
            workflows=workflows,
            digest=digest.hexdigest(),
            skip=frozenset(str(i.path[1]) for i in issues),
        )
    except ConfigError as err:
        raise ConfigError([*problems, *err.problems]) from None
    if problems:
        raise ConfigError(problems)
    return pipeline


def _set_vars(
    set_vars: Mapping[str, Any] | Iterable[str], declared: Mapping[str, Any]
) -> dict[str, Any]:
    from rhflow.planner import parse_assignments

    values = dict(set_vars) if isinstance(set_vars, Mapping) else parse_assignments(list(set_vars))
    merged = dict(declared)
    for key, value in values.items():
        if key not in declared:
            known = ", ".join(sorted(declared)) or "none (declare them under vars:)"
            raise UsageError(
                f"--set {key}=...: the pipeline has no variable '{key}'"
                f"{did_you_mean(key, declared)}; variables are: {known}"
            )
        merged[key] = value
    return merged


# -- meaning checks: Document -> Pipeline ----------------------------------------------------

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
) -> Pipeline:
    """Check the meaning of a schema-valid document and build the Pipeline (steps upstream
    first); ConfigError lists every problem. Steps named in ``skip`` (which failed the schema)
    are left out, but still count as existing for ``needs``."""
    builder = _Builder(doc, path, workflows)
    data = doc.data
    steps = {
        name: builder.step(name, raw, data.get("defaults") or {})
        for name, raw in data["steps"].items()
        if str(name) not in skip
    }
    order = builder.order(steps, known=[str(n) for n in data["steps"]])
    builder.sample_render([steps[n] for n in order], dict(vars_))
    if builder.problems:
        raise ConfigError(builder.problems)
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


class _Builder:
    def __init__(self, doc: Document, path: Path, workflows: WorkflowSource | None) -> None:
        self.doc = doc
        self.base = path.parent
        self.workflows = workflows
        self.problems: list[Problem] = []
        self.nodes: dict[str, Mapping[str, Any] | None] = {}

    def report(self, path: Iterable[str | int], message: str, *, at_key: bool = False) -> None:
        self.problems.append(self.doc.problem(path, message, at_key=at_key))

    def where(self, path: tuple[str | int, ...]) -> Where:
        line, col = self.doc.where(path)
        return Where(self.doc.file, line, col, dotted(path))

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
        return Step(
            name=name,
            target=target,
            workflow_json=nodes,
            sweep=self.sweep(base, raw),
            overrides=self.overrides(base, raw, nodes),
            needs=(needs,) if isinstance(needs, str) else tuple(needs),
            outputs=outputs,
            retries=DEFAULT_RETRIES if fields["retries"] is None else fields["retries"],
            timeout=float(fields["timeout"] or DEFAULT_TIMEOUT),
            instance_type=fields["instance_type"],
            add_metadata=fields["add_metadata"],
            use_personal_queue=fields["use_personal_queue"],
            webhook_url=fields["webhook_url"],
            where=self.where(base),
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
            nodes = workflow_nodes(json.loads(path.read_text(encoding="utf-8")))
        except OSError:
            self.report(at, f"file not found: {relpath} (paths are relative to the pipeline file)")
            return None
        except ValueError as exc:
            self.report(at, f"{relpath} is not valid JSON: {exc}")
            return None
        if nodes is None:
            self.report(
                at, f"{relpath} is not an API-format workflow (export it with 'Save (API Format)')"
            )
        return nodes

    # -- sweeps ------------------------------------------------------------------------------

    def sweep(self, base: tuple[str | int, ...], raw: Mapping[str, Any]) -> Sweep:
        matrix = raw.get("matrix") or {}
        axes = [(n, self.axis((*base, "matrix", n), v)) for n, v in matrix.items()
                if n not in ("include", "exclude")]  # fmt: skip
        sources = [((*base, "matrix", n), n) for n, _ in axes]
        zips = []
        if "zip" in raw:
            zips.append(self.zip((*base, "zip"), raw["zip"]))
            sources += [((*base, "zip", n), n) for n in raw["zip"]]
        if "rows" in raw:
            zips.append(self.rows((*base, "rows"), raw["rows"]))
            sources += [((*base, "rows"), str(n)) for n in (zips[-1][0] if zips[-1] else ())]
        self.check_names(sources)
        sweep = Sweep(tuple(axes), tuple(tuple(z) for z in zips))
        include = self.combos(
            (*base, "matrix", "include"), matrix.get("include") or [], sweep, True
        )
        exclude = self.combos(
            (*base, "matrix", "exclude"), matrix.get("exclude") or [], sweep, False
        )
        return Sweep(sweep.axes, sweep.zips, include, exclude)

    def axis(self, at: tuple[str | int, ...], value: Any) -> tuple[Any, ...]:
        if isinstance(value, list):
            return tuple(value)
        start, stop, *rest = value["range"]
        step = rest[0] if rest else 1
        if step == 0:
            self.report((*at, "range"), "range step must not be 0")
            return ()
        values = range(start, stop, step)
        if not values:
            self.report(
                (*at, "range"), f"range({start}, {stop}, {step}) is empty; stop is excluded"
            )
        if len(values) > MAX_AXIS:
            self.report((*at, "range"), f"range has {len(values)} values; at most {MAX_AXIS}")
            return ()
        return tuple(values)

    def zip(self, at: tuple[str | int, ...], table: Mapping[str, Any]) -> list[dict[str, Any]]:
        columns = {name: self.axis((*at, name), value) for name, value in table.items()}
        lengths = {name: len(values) for name, values in columns.items()}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{n}: {k}" for n, k in lengths.items())
            self.report(at, f"zip lists must have the same length; lengths are {shown}")
            return []
        return [
            dict(zip(columns, values, strict=True))
            for values in zip(*columns.values(), strict=True)
        ]

    def rows(self, at: tuple[str | int, ...], relpath: str) -> list[dict[str, Any]]:
        try:
            rows = read_rows(self.base / relpath)
        except OSError:
            self.report(at, f"file not found: {relpath} (paths are relative to the pipeline file)")
            return []
        except ValueError as exc:
            self.report(at, f"{relpath}: {exc}")
            return []
        if not rows:
            self.report(at, f"{relpath} has no rows")
        for number, row in enumerate(rows, 1):
            if set(row) != set(rows[0]):
                self.report(
                    at,
                    f"{relpath}: row {number} has keys {sorted(row)}, row 1 has {sorted(rows[0])}",
                )
                return []
        return rows

    def check_names(self, sources: list[tuple[tuple[str | int, ...], str]]) -> None:
        seen: set[str] = set()
        for at, name in sources:
            at_key = at[-1] == name
            if name in seen:
                message = (
                    f"parameter '{name}' is defined twice; matrix, zip and rows need distinct names"
                )
                self.report(at, message, at_key=at_key)
            elif name in RESERVED or not str(name).isidentifier():
                reserved = ", ".join(sorted(RESERVED))
                message = (
                    f"'{name}' cannot be a parameter name: use an identifier other than {reserved}"
                )
                self.report(at, message, at_key=at_key)
            seen.add(name)

    def combos(
        self, at: tuple[str | int, ...], entries: list[Any], sweep: Sweep, complete: bool
    ) -> tuple[dict[str, Any], ...]:
        names = sweep.names
        for number, entry in enumerate(entries):
            for key in entry:
                if key not in names:
                    known = ", ".join(names) or "none"
                    self.report(
                        (*at, number, key),
                        f"'{key}' is not a parameter of this step{did_you_mean(key, names)}; "
                        f"parameters are: {known}",
                        at_key=True,
                    )
            missing = [n for n in names if n not in entry]
            if complete and missing:
                self.report(
                    (*at, number), f"include entry lacks {', '.join(missing)}; give every parameter"
                )
        return tuple(dict(e) for e in entries)

    # -- overrides ---------------------------------------------------------------------------

    def overrides(
        self, base: tuple[str | int, ...], raw: Mapping[str, Any], nodes: Mapping[str, Any] | None
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
            override = self.override(at, node_key, field_name, value, nodes, raw)
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
        raw: Mapping[str, Any],
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
                deferred = self.check_needs(at, template, raw)
        return Override(node_id, field_name, value, self.where(at), deferred)

    def file_ref(self, at: tuple[str | int, ...], relpath: str) -> FileRef | None:
        path = (self.base / relpath).absolute()
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            self.report(
                (*at, "file"),
                f"file not found: {relpath} (paths are relative to the pipeline file)",
            )
            return None
        return FileRef(path, Path(relpath).as_posix(), digest)

    def compile(self, at: tuple[str | int, ...], source: str) -> Template | None:
        try:
            return compile_template(source)
        except RenderError as exc:
            self.report(at, str(exc))
            return None

    def check_needs(
        self, at: tuple[str | int, ...], template: Template, raw: Mapping[str, Any]
    ) -> bool:
        declared = raw.get("needs") or ()
        declared = (declared,) if isinstance(declared, str) else tuple(declared)
        for name in sorted(template.needs - set(declared)):
            self.report(
                at, f"reads needs.{name} but '{name}' is not in this step's needs; add it to needs"
            )
        return "needs" in template.names

    # -- the whole pipeline ------------------------------------------------------------------

    def order(self, steps: Mapping[str, Step], known: list[str]) -> list[str]:
        from rhflow.planner import order_steps

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
        from rhflow.planner import expand_sweep, sample_needs

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
        from rhflow.planner import check_output_path

        at = (
            ("steps", step.name, "outputs")
            if "outputs" in self.doc.data["steps"][step.name]
            else ("defaults", "outputs")
        )
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

"""``rhflow validate``: check pipeline files and print every problem with its line.

Every check that needs nothing but the file runs offline. Overrides of a cloud workflow are
checked against its graph: the step's ``workflow_file``, or the JSON fetched from the server
when a key is set. Where the graph cannot be had, the step gets a ``not checked`` line that
says why, so a pass is never claimed for a check that was not made (``--strict`` fails then).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import click

from rhflow.errors import ConfigError, LockError, PlanError
from rhflow.execute.locking import check_lock
from rhflow.model import FileRef, Pipeline, Step
from rhflow.pipeline.loader import load_pipeline
from rhflow.pipeline.lockfile import lock_path
from rhflow.pipeline.render import template_limits
from rhflow.pipeline.workflows import CachedWorkflows, WorkflowSource, why_unchecked
from rhflow.planning.planner import MAX_TASKS, plan
from rhflow.planning.summary import count_tasks

if TYPE_CHECKING:
    from rhflow.api.client import Client

#: ``missing``: an input file (``{file: ...}``) not there yet, a warning that --strict fails on.
Kind = Literal["error", "not_checked", "warning", "missing"]


def validate(
    files: Sequence[str],
    *,
    set_vars: Iterable[str],
    strict: bool = False,
    as_json: bool = False,
    api_key: str | None = None,
    base_url: str | None = None,
    frozen: bool = False,
    max_tasks: int = MAX_TASKS,
    template_limit: Iterable[str] = (),
) -> int:
    """Print one line per file (``ok`` or its problems), ``not checked`` lines and warnings;
    exit 0 when every file is valid (and, with ``strict``, every override was checked)."""
    client = _client(api_key=api_key, base_url=base_url)
    with template_limits(template_limit):
        result = validate_files(
            files,
            set_vars=set_vars,
            workflows=CachedWorkflows(client) if client is not None else None,
            lock_client=client,
            frozen=frozen,
            max_tasks=max_tasks,
        )
    code = result.exit_code(strict=strict)
    if as_json:
        click.echo(json.dumps({**result.to_dict(), "strict": strict, "exit_code": code}))
        return code
    for line in result.lines:
        click.echo(line)
    for warning in result.warnings:
        click.echo(warning, err=True)
    return code


def _client(*, api_key: str | None = None, base_url: str | None = None) -> Client | None:
    """A client when a key is given or set; else None (no network: workflow JSON comes from
    workflow_file only, and a lock is not compared)."""
    key = api_key or os.environ.get("RH_API_KEY", "")
    if not key.strip():
        return None
    from rhflow.api.client import Client  # requests loads only when a server may be asked

    return Client.from_env(api_key=key, base_url=base_url)


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the report: a problem, an override that could not be checked, a warning."""

    kind: Kind
    file: str
    message: str
    line: int | None = None
    col: int | None = None
    path: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}" if self.line is not None else self.file
        if self.kind == "warning":
            return f"{where}: warning: {self.message}"
        if self.kind == "missing":
            return f"{where}: warning: {self.path}: {self.message}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "path": self.path,
            "message": self.message,
        }


_PROBLEMS = ("error", "not_checked")


@dataclass(frozen=True, slots=True)
class FileReport:
    """What validating one file found; ``tasks`` is None when the file is invalid."""

    file: str
    tasks: int | None
    findings: tuple[Finding, ...] = ()

    @property
    def ok(self) -> bool:
        return self.tasks is not None

    @property
    def checked(self) -> bool:
        return not any(f.kind in ("not_checked", "missing") for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "ok": self.ok,
            "checked": self.checked,
            "tasks": self.tasks,
            "problems": [f.to_dict() for f in self.findings if f.kind in _PROBLEMS],
            "warnings": [f.to_dict() for f in self.findings if f.kind not in _PROBLEMS],
        }


@dataclass(frozen=True, slots=True)
class Validation:
    """The outcome of validating files: lines to print and whether all were valid."""

    reports: tuple[FileReport, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.reports)

    @property
    def checked(self) -> bool:
        return all(r.checked for r in self.reports)

    @property
    def lines(self) -> tuple[str, ...]:
        """Per file: its problems, or ``FILE: ok (N tasks)``, then its ``not checked`` lines."""
        out: list[str] = []
        for report in self.reports:
            out += [str(f) for f in report.findings if f.kind == "error"]
            if report.ok:
                out.append(f"{report.file}: ok ({count_tasks(report.tasks or 0)})")
            out += [str(f) for f in report.findings if f.kind == "not_checked"]
        return tuple(out)

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(str(f) for r in self.reports for f in r.findings if f.kind not in _PROBLEMS)

    def exit_code(self, *, strict: bool = False) -> int:
        """0 valid; 1 when a file is invalid or, with ``strict``, an override was not checked
        or an input file is missing."""
        return 0 if self.ok and (self.checked or not strict) else 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "files": [r.to_dict() for r in self.reports],
        }


def validate_files(
    files: Sequence[str],
    *,
    set_vars: Mapping[str, Any] | Iterable[str] = (),
    workflows: WorkflowSource | None = None,
    lock_client: Client | None = None,
    frozen: bool = False,
    max_tasks: int = MAX_TASKS,
) -> Validation:
    """Load and plan each file: its problems (sorted), or its task count and plan warnings
    (identical requests); for every step whose overrides could not be checked, why; and where
    an ``rhflow.lock`` is beside the file, what differs from it on ``lock_client``'s server
    (errors with ``frozen``)."""
    locks = _Locks(lock_client, frozen)
    return Validation(
        tuple(_validate_file(f, set_vars, workflows, locks, max_tasks) for f in files)
    )


@dataclass(frozen=True, slots=True)
class _Locks:
    client: Client | None
    frozen: bool

    def findings(self, file: str, pipeline: Pipeline) -> tuple[Finding, ...]:
        """The lock's differences: warnings (errors with --frozen), or why not compared."""
        if not lock_path(pipeline.source).exists() and not self.frozen:
            return ()
        if self.client is None:
            why = "rhflow.lock not compared: no API key to fetch the workflows (set RH_API_KEY)"
            # --frozen promises a failure when the workflows cannot be compared
            return (Finding("error" if self.frozen else "not_checked", file, why),)
        try:
            check = check_lock(
                pipeline, self.client, server=self.client.base_url, frozen=self.frozen
            )
        except LockError as err:
            return (Finding("error", file, str(err)),)
        return tuple(Finding("warning", file, w) for w in check.warnings)


def _validate_file(
    file: str,
    set_vars: Mapping[str, Any] | Iterable[str],
    workflows: WorkflowSource | None,
    locks: _Locks,
    max_tasks: int,
) -> FileReport:
    try:
        pipeline = load_pipeline(
            file, set_vars=set_vars, workflows=workflows, allow_missing_inputs=True
        )
        graph = plan(pipeline, max_tasks=max_tasks)
    except ConfigError as err:
        errors = tuple(
            Finding("error", p.file, p.message, p.line, p.col, p.path) for p in err.problems
        )
        return FileReport(file, None, errors)
    except PlanError as err:
        return FileReport(file, None, (_plan_finding(file, str(err)),))
    unchecked = tuple(_not_checked(step, workflows) for step in unchecked_steps(pipeline))
    warnings = _missing_inputs(pipeline) + tuple(
        Finding("warning", file, w) for w in graph.warnings
    )
    lock = locks.findings(file, pipeline)
    if any(f.kind == "error" for f in lock):
        return FileReport(file, None, unchecked + lock)
    return FileReport(file, len(graph.tasks), unchecked + lock + warnings)


def _missing_inputs(pipeline: Pipeline) -> tuple[Finding, ...]:
    """A warning per ``{file: ...}`` input not there yet: validate accepts the file (a
    skeleton names its inputs before they exist); run and plan refuse it."""
    found = []
    for step in pipeline.steps:
        for override in step.overrides:
            ref = override.value
            if not isinstance(ref, FileRef) or not ref.missing:
                continue
            where = override.where
            message = (
                f"input file not found yet: {ref.relpath} (paths are relative to the pipeline "
                "file); put the file there before rhflow plan or run, which refuse a missing input"
            )
            found.append(
                Finding("missing", where.file, message, where.line, where.col, f"{where.path}.file")
            )
    return tuple(found)


def _plan_finding(file: str, text: str) -> Finding:
    """A PlanError's text (``FILE:LINE:COL: path: message`` or a bare message) as a Finding."""
    located = re.match(rf"{re.escape(file)}:(\d+):(\d+): (?:([\w.\[\]-]+): )?(.*)$", text, re.S)
    if located:
        line, col, path, message = located.groups()
        return Finding("error", file, message, int(line), int(col), path or "")
    return Finding("error", file, text.removeprefix(f"{file}: "))


def unchecked_steps(pipeline: Pipeline) -> list[Step]:
    """Steps with overrides that no workflow graph was had for (nothing checked them)."""
    return [step for step in pipeline.steps if step.overrides and step.workflow_json is None]


def _not_checked(step: Step, workflows: WorkflowSource | None) -> Finding:
    where = step.where
    reason = why_unchecked(step.target.kind, step.target.id, workflows)
    return Finding(
        "not_checked",
        where.file if where else str(step.name),
        f"overrides not checked: {reason}",
        where.line if where else None,
        where.col if where else None,
        f"steps.{step.name}",
    )

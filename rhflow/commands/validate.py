"""``rhflow validate``: check pipeline files and print every problem with its line."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import click

from rhflow.api.client import Client
from rhflow.errors import ConfigError, PlanError
from rhflow.pipeline.loader import load_pipeline
from rhflow.pipeline.workflows import CachedWorkflows, WorkflowSource
from rhflow.planning.planner import plan
from rhflow.planning.summary import count_tasks


def validate(files: Sequence[str], *, set_vars: Iterable[str]) -> int:
    """Print one line per file (``ok`` or its problems) and warnings; exit 0 when all are valid."""
    result = validate_files(files, set_vars=set_vars, workflows=workflow_source())
    for line in result.lines:
        click.echo(line)
    for warning in result.warnings:
        click.echo(warning, err=True)
    return 0 if result.ok else 1


def workflow_source() -> CachedWorkflows | None:
    """Cached getJsonApiFormat answers when a key is set; else None (no network)."""
    if not os.environ.get("RH_API_KEY", "").strip():
        return None
    return CachedWorkflows(Client.from_env())


@dataclass(frozen=True, slots=True)
class Validation:
    """The outcome of validating files: lines to print and whether all were valid."""

    lines: tuple[str, ...]
    ok: bool
    warnings: tuple[str, ...] = ()


def validate_files(
    files: Sequence[str],
    *,
    set_vars: Mapping[str, Any] | Iterable[str] = (),
    workflows: WorkflowSource | None = None,
) -> Validation:
    """Load and plan each file; one ``FILE: ok (N tasks)`` line per valid file, every problem
    of the others as ``FILE:LINE:COL: path: message`` lines (sorted per file); plan warnings
    (identical requests) as ``FILE: warning: ...``."""
    lines: list[str] = []
    warnings: list[str] = []
    ok = True
    for file in files:
        try:
            graph = plan(load_pipeline(file, set_vars=set_vars, workflows=workflows))
        except ConfigError as err:
            lines.extend(str(p) for p in err.problems)
            ok = False
        except PlanError as err:
            lines.append(str(err) if str(err).startswith(file) else f"{file}: {err}")
            ok = False
        else:
            lines.append(f"{file}: ok ({count_tasks(len(graph.tasks))})")
            warnings.extend(f"{file}: warning: {w}" for w in graph.warnings)
    return Validation(tuple(lines), ok, tuple(warnings))

"""Pipeline files: YAML with line/column marks -> schema check -> a checked Pipeline.

The only module that imports yaml. ``load_pipeline`` reports every problem it finds at once, as
one ConfigError carrying ``Problem(file, line, col, path, message)`` entries; the shape comes
from ``schemas/pipeline.schema.json``, the meaning from :mod:`rhflow.pipeline.checks` (steps, needs,
sweeps, templates, local files and, where the workflow JSON is known, every override
against it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rhflow.errors import ConfigError, Problem, UsageError
from rhflow.model import Pipeline
from rhflow.pipeline import schema
from rhflow.pipeline.checks import build_pipeline
from rhflow.pipeline.files import MAX_PIPELINE, read_text
from rhflow.pipeline.rows import read_rows
from rhflow.pipeline.schema import did_you_mean
from rhflow.pipeline.sweeps import MAX_AXIS, RESERVED
from rhflow.pipeline.workflows import WorkflowSource
from rhflow.pipeline.yamlfile import (
    Document,
    PathKey,
    dotted,
    parse_assignments,
    parse_document,
    parse_value,
)

#: Most tasks in flight at once a pipeline or --concurrency may ask for.
MAX_CONCURRENCY = 1000
_EMPTY_FILE = "the file is empty; a pipeline needs at least `version: 1` and `steps:`"

__all__ = [
    "MAX_AXIS",
    "RESERVED",
    "Document",
    "PathKey",
    "build_pipeline",
    "dotted",
    "load_pipeline",
    "parse_document",
    "parse_value",
    "read_rows",
]


def load_pipeline(
    path: str | Path,
    *,
    set_vars: Mapping[str, Any] | Iterable[str] = (),
    output: str | Path | None = None,
    concurrency: int | None = None,
    workflows: WorkflowSource | None = None,
    allow_missing_inputs: bool = False,
) -> Pipeline:
    """Load, validate and check a pipeline file; ConfigError lists every problem found.
    ``allow_missing_inputs`` (for ``rhflow validate``): an input file that does not exist yet
    is marked ``missing`` on its FileRef instead of being a problem."""
    path = Path(path)
    if concurrency is not None and not 1 <= concurrency <= MAX_CONCURRENCY:
        raise UsageError(f"--concurrency must be 1 to {MAX_CONCURRENCY}, got {concurrency}")
    try:
        text = read_text(path, MAX_PIPELINE)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if isinstance(exc, UnicodeDecodeError):
            reason = f"it is not UTF-8 text (byte {exc.start}); save it as UTF-8"
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
    # What decides the tasks: the file and its variables. Not the output folder or the
    # concurrency, so that shards of one pipeline run into other folders can be merged.
    digest = hashlib.sha256(text.encode())
    digest.update(json.dumps(overrides, sort_keys=True, default=str).encode())
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
            allow_missing_inputs=allow_missing_inputs,
        )
    except ConfigError as err:
        raise ConfigError([*problems, *err.problems]) from None
    if problems:
        raise ConfigError(problems)
    return pipeline


def _set_vars(
    set_vars: Mapping[str, Any] | Iterable[str], declared: Mapping[str, Any]
) -> dict[str, Any]:
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

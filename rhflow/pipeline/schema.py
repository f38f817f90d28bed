"""JSON Schema validation of a pipeline document, every error at once.

``schemas/pipeline.schema.json`` is the single definition of the file's shape (editors read it
through ``$schema``). This module turns jsonschema's errors into short, located issues; the
loader adds the line and column.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

_PACKAGE = Path(__file__).resolve().parent.parent
#: Where the schemas are: inside the installed package (the wheel ships schemas/ as
#: rhflow/schemas), or beside the package in a source checkout.
SCHEMA_DIRS = (_PACKAGE / "schemas", _PACKAGE.parent / "schemas")
#: The schemas rhflow defines, by the name ``rhflow schema NAME`` takes.
SCHEMA_NAMES = ("pipeline", "manifest")


def schema_path(name: str) -> Path:
    """The file of the ``name`` schema (``pipeline``, ``manifest``), installed or checked out."""
    for folder in SCHEMA_DIRS:
        path = folder / f"{name}.schema.json"
        if path.is_file():
            return path
    raise FileNotFoundError(f"{name}.schema.json is missing from the installation")


@dataclass(frozen=True, slots=True)
class Issue:
    """One schema violation: ``path`` leads to the offending value (or key, when ``at_key``)."""

    path: tuple[str | int, ...]
    message: str
    at_key: bool = False


@lru_cache(maxsize=1)
def pipeline_schema() -> dict[str, Any]:
    """The pipeline JSON Schema (from the installed package or the source tree)."""
    loaded: dict[str, Any] = json.loads(schema_path("pipeline").read_text(encoding="utf-8"))
    return loaded


@lru_cache(maxsize=1)
def _validator() -> Any:
    return jsonschema.Draft202012Validator(pipeline_schema())


def check(document: Any) -> list[Issue]:
    """Every schema violation in ``document`` (the loader sorts them by position)."""
    issues: list[Issue] = []
    for error in _validator().iter_errors(document):
        issues.extend(_issues(error))
    issues.extend(_non_string_names(document))
    seen = {issue.path for issue in issues}
    issues.extend(i for i in _non_finite_numbers(document) if i.path not in seen)
    return [Issue(_keys_as_text(document, i.path), i.message, i.at_key) for i in issues]


def _keys_as_text(document: Any, path: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """Mapping keys as strings, list indices as ints (YAML allows ``3:`` as a key)."""
    result: list[str | int] = []
    node = document
    for part in path:
        if isinstance(node, dict):
            result.append(str(part))
            node = node.get(part)
        else:
            result.append(part)
            node = node[part] if isinstance(node, list) and isinstance(part, int) else None
    return tuple(result)


def _non_string_names(document: Any) -> Iterator[Issue]:
    """Names written as numbers (``1:``), which JSON Schema's propertyNames cannot see."""
    if not isinstance(document, dict):
        return
    tables: list[tuple[tuple[str | int, ...], Any]] = [
        (("steps",), document.get("steps")),
        (("vars",), document.get("vars")),
    ]
    steps = document.get("steps")
    for name, step in steps.items() if isinstance(steps, dict) else ():
        if isinstance(step, dict):
            tables += [(("steps", name, key), step.get(key)) for key in ("matrix", "zip")]
    for path, table in tables:
        for key in table if isinstance(table, dict) else ():
            if not isinstance(key, str):
                yield Issue((*path, key), _name_message(key), at_key=True)


def _non_finite_numbers(document: Any) -> Iterator[Issue]:
    """``.nan``, ``.inf`` and ``-.inf`` anywhere: JSON Schema's ranges cannot see NaN, and no
    field of a pipeline means anything with them."""
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            yield Issue(path, f"{value} is not a finite number; give a number such as 600")
        elif isinstance(value, dict):
            stack.extend(((*path, key), item) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend(((*path, number), item) for number, item in enumerate(value))


def _issues(error: Any) -> Iterator[Issue]:
    path = tuple(error.absolute_path)
    custom = error.schema.get("errorMessage") if isinstance(error.schema, dict) else None
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        hint = f"; expected one of: {', '.join(allowed)}" if allowed else ""
        patterns = [re.compile(p) for p in error.schema.get("patternProperties", {})]
        extra = [k for k in error.instance if k not in allowed]
        for key in sorted(extra, key=str):
            if any(p.search(str(key)) for p in patterns):
                continue
            message = f"unknown key '{key}'{did_you_mean(key, allowed)}{hint}"
            yield Issue((*path, key), message, at_key=True)
    elif "propertyNames" in error.relative_schema_path:
        key = error.instance
        yield Issue((*path, key), _name_message(key), at_key=True)
    elif custom and error.validator in ("anyOf", "oneOf"):
        yield Issue(path, custom)
    else:
        yield Issue(path, _message(error))


def did_you_mean(name: object, choices: Iterable[object]) -> str:
    """`` (did you mean 'seed'?)`` when ``name`` looks like a typo of one of ``choices``."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.7)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _name_message(key: object) -> str:
    return (
        f"'{key}' is not a valid name; use letters, digits and underscores, "
        "not starting with a digit"
    )


def _message(error: Any) -> str:
    validator, value = error.validator, error.validator_value
    instance = error.instance
    custom = isinstance(error.schema, dict) and "errorMessage" in error.schema
    if validator in ("pattern", "type") and custom:
        return str(error.schema["errorMessage"])
    if validator == "required":
        missing = [k for k in value if k not in instance]
        return f"missing required key '{missing[0]}'" if missing else error.message
    if validator == "type":
        kinds = value if isinstance(value, list) else [value]
        return f"{_show(instance)} is not {' or '.join(_article(k) for k in kinds)}"
    if validator == "dependentRequired":
        pairs = [(k, n) for k, needed in value.items() if k in instance for n in needed]
        missing = [(k, n) for k, n in pairs if n not in instance]
        if missing:
            return f"'{missing[0][0]}' needs '{missing[0][1]}' beside it"
    if validator == "const":
        return f"must be {json.dumps(value)}, not {_show(instance)}"
    if validator == "minProperties":
        return "must not be empty"
    if validator in ("minItems", "maxItems"):
        return f"{_show(instance)} has {len(instance)} items; {validator[:3]}imum is {value}"
    return str(error.message)


def _article(kind: str) -> str:
    return {"object": "a mapping", "array": "a list", "integer": "an integer"}.get(
        kind, f"a {kind}"
    )


def _show(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:37] + "..."

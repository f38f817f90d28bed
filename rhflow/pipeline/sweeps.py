"""The sweep of one step (matrix, zip, rows, include/exclude) checked into a Sweep.

:class:`SweepChecker` is the base of the pipeline builder in :mod:`rhflow.pipeline.checks`: it
holds the document, the pipeline's folder and the problems found so far. A problem is reported
at its line, not raised, so that a file's problems all come out at once. ``expand_sweep`` lists a
checked sweep's combinations in order.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from rhflow.errors import Problem
from rhflow.model import Sweep, Where
from rhflow.pipeline.render import BASE_NAMES, OUTPUT_NAMES
from rhflow.pipeline.rows import read_rows
from rhflow.pipeline.schema import did_you_mean
from rhflow.pipeline.yamlfile import Document, dotted

#: Most values one ``range`` axis may produce.
MAX_AXIS = 1_000_000
#: Names a sweep parameter cannot take: the template names rhflow provides.
RESERVED = BASE_NAMES | OUTPUT_NAMES


def unreadable(relpath: str, exc: OSError) -> str:
    """What went wrong reading ``relpath`` (relative to the pipeline file), for a problem."""
    if isinstance(exc, IsADirectoryError):
        return f"{relpath} is a folder, not a file"
    if isinstance(exc, PermissionError):
        return f"cannot read {relpath}: permission denied; check its permissions"
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return f"file not found: {relpath} (paths are relative to the pipeline file)"
    return f"cannot read {relpath}: {exc.strerror or exc}"


class SweepChecker:
    """Reads the sweep of a step; collects problems in ``problems`` instead of raising."""

    def __init__(self, doc: Document, path: Path) -> None:
        self.doc = doc
        self.base = path.parent
        self.problems: list[Problem] = []

    def report(self, path: Iterable[str | int], message: str, *, at_key: bool = False) -> None:
        self.problems.append(self.doc.problem(path, message, at_key=at_key))

    def where(self, path: tuple[str | int, ...]) -> Where:
        line, col = self.doc.where(path)
        return Where(self.doc.file, line, col, dotted(path))

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
        except OSError as exc:
            self.report(at, unreadable(relpath, exc))
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


def expand_sweep(sweep: Sweep) -> Iterator[dict[str, Any]]:
    """The step's own combinations, in order: product of axes and zip groups (first axis
    slowest), minus ``exclude`` matches, then ``include`` entries."""
    names = [name for name, _ in sweep.axes]
    factors: list[Sequence[Any]] = [values for _, values in sweep.axes]
    factors += [group for group in sweep.zips]
    n_axes = len(names)
    for picked in itertools.product(*factors):
        combo = dict(zip(names, picked[:n_axes], strict=True))
        for row in picked[n_axes:]:
            combo.update(row)
        if not any(_matches(combo, entry) for entry in sweep.exclude):
            yield combo
    for entry in sweep.include:
        yield dict(entry)


def sweep_size(sweep: Sweep) -> int:
    """How many combinations the product has (before exclude), plus the includes."""
    size = math.prod(len(values) for _, values in sweep.axes)
    return size * math.prod(len(group) for group in sweep.zips) + len(sweep.include)


def _matches(params: Mapping[str, Any], entry: Mapping[str, Any]) -> bool:
    return all(key in params and params[key] == value for key, value in entry.items())

"""``rhflow diff``: compare two runs task by task; exit 1 when anything differs (for CI)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from rhflow.commands.grid import manifest_path
from rhflow.errors import StateError, UsageError
from rhflow.record.manifest import Manifest, read_manifest
from rhflow.view.diff import compare, summary_lines
from rhflow.view.diffpage import write_diff_page


def diff(
    first: str,
    second: str,
    *,
    output: str | None,
    as_json: bool,
    report: Callable[[str], None] = print,
) -> int:
    """Compare the runs of manifests ``first`` (A) and ``second`` (B); 0 when nothing changed."""
    a_path, b_path = manifest_path(first), manifest_path(second)
    comparison = compare(_read(a_path), a_path, _read(b_path), b_path)
    if output:
        write_diff_page(comparison, Path(output))
    if as_json:
        report(json.dumps(comparison.to_dict(), ensure_ascii=False, indent=2))
    else:
        for line in summary_lines(comparison):
            report(line)
        if output:
            report(f"page: {output}")
    return 1 if comparison.changed else 0


def _read(path: Path) -> Manifest:
    """A manifest, or a usage error (exit 2, never confused with 'something changed')."""
    try:
        return read_manifest(path)
    except StateError as err:
        raise UsageError(str(err)) from err

"""``rhflow diff``: compare two runs task by task; exit 1 when anything differs (for CI)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from rhflow.commands.grid import open_manifest
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
    (a_path, a), (b_path, b) = open_manifest(first), open_manifest(second)
    comparison = compare(a, a_path, b, b_path)
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

"""``rhflow report``: one HTML page with a run's summary, grids, failures, coins and timings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rhflow.commands.grid import open_manifest
from rhflow.view.report import write_report


def report(manifest: str, *, output: str | None, report: Callable[[str], None] = print) -> int:
    """Write the report of ``manifest`` to ``output`` (default: report.html beside it)."""
    path, loaded = open_manifest(manifest)
    page = Path(output) if output else path.parent / "report.html"
    write_report(loaded, path.parent, page)
    count = len(loaded.tasks)
    report(f"{page}: {count} task{'' if count == 1 else 's'} of {loaded.pipeline!r}")
    return 0

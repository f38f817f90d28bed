"""``rhflow grid``: a labelled contact sheet of a sweep's images."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rhflow.record.manifest import Manifest, read_given_manifest
from rhflow.view.grid import arrange, draw


def manifest_path(given: str) -> Path:
    """The manifest named on the command line: a file, or a run's output folder holding one."""
    path = Path(given)
    return path / "manifest.json" if path.is_dir() else path


def open_manifest(given: str) -> tuple[Path, Manifest]:
    """The path and content of the manifest named on the command line (a usage error, exit 2,
    when it cannot be read)."""
    path = manifest_path(given)
    return path, read_given_manifest(path)


def grid(
    manifest: str,
    *,
    x: str,
    y: str | None,
    step: str | None,
    output: str | None,
    report: Callable[[str], None] = print,
) -> int:
    """Draw the grid of ``manifest`` and write it to ``output`` (default: beside the manifest)."""
    path, loaded = open_manifest(manifest)
    laid_out = arrange(loaded, path.parent, x, y, step)
    out = Path(output) if output else path.parent / "grid.png"
    sheet = draw(laid_out, out)
    cells = len(laid_out.columns) * len(laid_out.rows) * len(laid_out.sections)
    report(f"{out}: {cells} cells of step {laid_out.step!r}, {sheet.size[0]}x{sheet.size[1]} px")
    return 0

"""The rows of a ``rows:`` sweep file: CSV with a header, JSONL, or a YAML list of mappings."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from rhflow.pipeline.files import MAX_DATA, read_text
from rhflow.pipeline.yamlfile import load_data


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV (header line; numbers become numbers), JSONL or YAML (list of mappings) file.

    Raises ValueError with a message for malformed content, OSError if unreadable.
    """
    text = read_text(path, MAX_DATA)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        try:
            return _csv_rows(text)
        except csv.Error as exc:
            raise ValueError(f"invalid CSV: {exc}") from exc
    if suffix == ".jsonl":
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        rows = load_data(text)
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError("expected a list of mappings, one per row")
    return rows


def _csv_rows(text: str) -> list[dict[str, Any]]:
    """The rows of CSV text under its header line; ValueError for a row of another width."""
    lines = (cells for cells in csv.reader(io.StringIO(text)) if cells)  # blank lines skipped
    header = next(lines, [])
    rows = []
    for number, cells in enumerate(lines, 1):
        if len(cells) != len(header):
            more = "more" if len(cells) > len(header) else "fewer"
            raise ValueError(
                f"row {number} has {more} fields than the header "
                f"({len(cells)}, the header has {len(header)})"
            )
        rows.append({k: _csv_cell(v) for k, v in zip(header, cells, strict=True)})
    return rows


def _csv_cell(value: str) -> Any:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value

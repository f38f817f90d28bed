"""``rhflow manifest merge``: one manifest from the manifests of shards or runs of a pipeline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rhflow.record.manifest import write_manifest
from rhflow.record.merge import merge_files


def merge(files: tuple[str, ...], out: str, *, report: Callable[[str], None] = print) -> int:
    """Merge ``files`` into ``out``; print what was merged."""
    target = Path(out)
    merged = merge_files([Path(f) for f in files], target)
    write_manifest(target, merged)
    counts = ", ".join(
        f"{merged.counts[k]} {k}" for k in ("succeeded", "failed") if k in merged.counts
    )
    report(
        f"merged {len(files)} manifests of {merged.pipeline!r}: {merged.counts['total']} tasks "
        f"({counts}) -> {target}"
    )
    return 0

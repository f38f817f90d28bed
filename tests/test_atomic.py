"""Atomic replacement: readers see the old file or the new one; failures leave nothing behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from rhflow.atomic import replacing, write_atomic


def test_write_atomic_replaces_the_file_with_the_usual_mode(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "manifest.json"
    write_atomic(target, b"old")
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["manifest.json"]


def test_a_failure_mid_write_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.png"
    target.write_bytes(b"complete old file")
    with pytest.raises(RuntimeError), replacing(target) as handle:
        handle.write(b"half of the ne")
        raise RuntimeError("connection dropped")
    assert target.read_bytes() == b"complete old file"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]

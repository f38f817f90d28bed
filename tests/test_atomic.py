"""Atomic replacement: readers see the old file or the new one; failures leave nothing behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from rhflow.atomic import NotAFileError, cannot_write, replacing, write_atomic


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


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_only_a_regular_file_is_ever_replaced(kind: str, tmp_path: Path) -> None:
    """Renaming over a device or a pipe would put a plain file in its place (``-o /dev/full``
    run as root replaced the device)."""
    target = tmp_path / "out.png"
    os.mkfifo(target) if kind == "fifo" else target.mkdir()
    with pytest.raises(NotAFileError), replacing(target) as handle:
        handle.write(b"never")
    assert stat.S_ISFIFO(target.stat().st_mode) if kind == "fifo" else target.is_dir()
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]
    assert cannot_write(target, NotAFileError()) == (
        f"cannot write {target}: it is a device, a pipe or a folder; name a file instead"
    )


def test_a_link_to_a_regular_file_is_replaced_by_the_new_file(tmp_path: Path) -> None:
    (tmp_path / "real.json").write_bytes(b"old")
    (tmp_path / "link.json").symlink_to(tmp_path / "real.json")
    write_atomic(tmp_path / "link.json", b"new")
    assert (tmp_path / "link.json").read_bytes() == b"new"
    assert (tmp_path / "real.json").read_bytes() == b"old"

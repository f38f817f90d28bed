"""Wheels of installed distributions, so a tool that builds its own environment can install
rhflow with no network.

``build_wheelhouse(folder, ["rhflow-deps", "hatchling"])`` writes one wheel per distribution
in the closure of the requirements, each packed from the files the distribution installed
(its RECORD), with a fresh RECORD. Same interpreter, same platform: the tags of the installed
wheel still hold.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as md
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path

from packaging.requirements import Requirement

_SKIPPED = {"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"}


def closure(requirements: Iterable[str]) -> dict[str, md.Distribution]:
    """The installed distributions ``requirements`` need, transitively (markers evaluated
    without extras)."""
    found: dict[str, md.Distribution] = {}
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = _norm(req.name)
        if name in found or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        dist = md.distribution(req.name)
        found[name] = dist
        todo += [Requirement(r) for r in dist.requires or ()]
    return found


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _tag(dist: md.Distribution) -> str:
    wheel = dist.read_text("WHEEL") or ""
    tags = re.findall(r"^Tag: (\S+)$", wheel, flags=re.M)
    return tags[0] if tags else "py3-none-any"


def pack(dist: md.Distribution, folder: Path) -> Path:
    """One wheel of ``dist`` from its installed files."""
    name, version = _norm(dist.metadata["Name"]), dist.version
    path = folder / f"{name}-{version}-{_tag(dist)}.whl"
    record: list[str] = []
    info_dir = ""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        for file in dist.files or ():
            parts = file.parts
            if parts[0] == ".." or "__pycache__" in parts:
                continue  # scripts (rebuilt from entry points) and byte code
            if parts[0].endswith(".dist-info"):
                info_dir = parts[0]
                if parts[-1] in _SKIPPED:
                    continue
            data = Path(str(dist.locate_file(file))).read_bytes()
            wheel.writestr(str(file), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{file},sha256={digest.decode()},{len(data)}")
        record.append(f"{info_dir}/RECORD,,")
        wheel.writestr(f"{info_dir}/RECORD", "\n".join(record) + "\n")
    return path


def build_wheelhouse(folder: Path, requirements: Iterable[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [pack(dist, folder) for dist in closure(requirements).values()]

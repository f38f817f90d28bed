"""Output file names: every name a template renders is checked here before it touches a path."""

from __future__ import annotations

from pathlib import PurePosixPath

from rhflow.errors import PlanError


def check_output_path(name: str) -> str:
    """``name`` normalised to a relative POSIX path; PlanError if empty, absolute or with ``..``."""
    text = name.replace("\\", "/").strip()
    path = PurePosixPath(text)
    if not text or text.endswith("/"):
        raise PlanError(
            f"output name {name!r} is empty; the outputs template must give a file name"
        )
    if path.is_absolute() or (len(text) > 1 and text[1] == ":"):
        raise PlanError(
            f"output name {name!r} is absolute; outputs must stay under the output folder"
        )
    if ".." in path.parts:
        raise PlanError(
            f"output name {name!r} contains '..'; outputs must stay under the output folder"
        )
    return path.as_posix()

"""Output file names: every name a template renders is checked here before it touches a path."""

from __future__ import annotations

from pathlib import PurePosixPath

from rhflow.errors import PlanError

#: What rhflow keeps in the output folder (``record.store.STATE_DIR`` holds the state store,
#: the lock and the staging folder; ``MANIFEST_NAME`` is the manifest): no output may be there.
RESERVED_FOLDER = ".rhflow"
RESERVED_FILE = "manifest.json"
#: Longest file or folder name most file systems take, in bytes; longest path.
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4096


def check_output_path(name: str) -> str:
    """``name`` normalised to a relative POSIX path; PlanError if empty, absolute, with ``..``, a
    NUL character, a part too long for a file system, or where rhflow keeps its own files."""
    text = name.replace("\\", "/").strip()
    parts = text.split("/")
    if (
        # no part over MAX_NAME_BYTES: 4 bytes at most per character, 1 per ASCII one
        (len(text) <= MAX_NAME_BYTES // 4 or (len(text) <= MAX_NAME_BYTES and text.isascii()))
        and "\x00" not in text
        and ":" not in text[1:2]
        and all(part and part != "." and part != ".." for part in parts)
        and parts[0].casefold() != RESERVED_FOLDER
        and text.casefold() != RESERVED_FILE
    ):
        return text  # already what PurePosixPath would make of it, and nothing to refuse
    path = PurePosixPath(text)
    shown = _show(name)
    if not text or text.endswith("/") or not path.parts:  # "", "dir/", ".", "./."
        raise PlanError(f"output name {shown} is empty; the outputs template must give a file name")
    if path.is_absolute() or (len(text) > 1 and text[1] == ":"):
        raise PlanError(
            f"output name {shown} is absolute; outputs must stay under the output folder"
        )
    if ".." in path.parts:
        raise PlanError(
            f"output name {shown} contains '..'; outputs must stay under the output folder"
        )
    if "\x00" in text:
        raise PlanError(f"output name {shown} contains a NUL character; no file name can")
    longest = max(len(part.encode("utf-8", "surrogatepass")) for part in path.parts)
    if longest > MAX_NAME_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise PlanError(
            f"output name {shown} has a part of {longest:,} bytes; file systems take names of "
            f"at most {MAX_NAME_BYTES} bytes (and paths of {MAX_PATH_BYTES:,})"
        )
    if path.parts[0].casefold() == RESERVED_FOLDER:
        raise PlanError(
            f"output name {shown} is inside {RESERVED_FOLDER}/, where rhflow keeps its state and "
            "staging files; choose another folder"
        )
    if path.as_posix().casefold() == RESERVED_FILE:
        raise PlanError(f"output name {shown} would overwrite the run's {RESERVED_FILE}")
    return path.as_posix()


def _show(name: str) -> str:
    return repr(name) if len(name) <= 80 else repr(name[:60]) + f"... ({len(name):,} characters)"

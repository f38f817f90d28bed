"""Every example in the pipeline-language pages works: YAML blocks validate and plan, and console
blocks print exactly what the page shows.

Conventions in the pages: a fence info string ``yaml file=NAME`` writes the block to NAME (other
blocks can then use it); ``invalid`` marks a YAML block that is meant to fail validation; a
``console`` block is ``$ rhflow ARGS`` followed by the expected output. Each page runs in its
own folder holding copies of ``pipelines/workflows`` and ``pipelines/refs``.
Run ``python tests/test_docs_pipelines.py`` to rewrite the console outputs after a change.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rhflow.cli import cli  # noqa: E402
from rhflow.pipeline.loader import load_pipeline  # noqa: E402
from rhflow.planning.planner import plan  # noqa: E402

if TYPE_CHECKING:
    from rhflow.emulator import Emulator

#: The pages about the pipeline language: its reference and the how-to guides that teach it.
PAGES = sorted(
    [
        *(ROOT / "docs" / "reference" / "pipelines").glob("*.md"),
        *(ROOT / "docs" / "how-to" / name for name in ("sweeps.md", "chains.md", "file-inputs.md")),
    ]
)
FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```$", re.M | re.S)


@contextmanager
def page_folder(folder: Path) -> Iterator[Path]:
    shutil.copytree(ROOT / "pipelines" / "workflows", folder / "workflows", dirs_exist_ok=True)
    shutil.copytree(ROOT / "pipelines" / "refs", folder / "refs", dirs_exist_ok=True)
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield folder
    finally:
        os.chdir(before)


def _blocks(text: str) -> Iterator[tuple[re.Match[str], list[str], str]]:
    for match in FENCE.finditer(text):
        info = match["info"].split()
        yield match, info, match["body"]


def _file_name(info: list[str], number: int) -> str:
    for word in info[1:]:
        if word.startswith("file="):
            return word[len("file=") :]
    return f"example-{number}.yaml"


def write_files(text: str, folder: Path) -> list[Path]:
    """Write every named or YAML block; return the YAML files that must be valid."""
    valid = []
    for number, (_, info, body) in enumerate(_blocks(text)):
        if not info or info[0] == "console" or (info[0] != "yaml" and len(info) == 1):
            continue
        path = folder / _file_name(info, number)
        path.write_text(body, encoding="utf-8")
        if info[0] == "yaml" and "invalid" not in info:
            valid.append(path)
    return valid


def console(command: str) -> str:
    args = shlex.split(command)
    assert args[0] == "rhflow", command
    result = CliRunner().invoke(cli, args[1:], catch_exceptions=False, standalone_mode=False)
    return result.output


def render_page(text: str) -> str:
    """The page with every console block's output replaced by what the command prints now."""
    parts, last = [], 0
    for match, info, body in _blocks(text):
        if info and info[0] == "console":
            command = body.splitlines()[0]
            assert command.startswith("$ "), command
            parts.append(text[last : match.start("body")])
            parts.append(f"{command}\n{console(command[2:])}")
            last = match.end("body")
    parts.append(text[last:])
    return "".join(parts)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_yaml_examples_validate_and_plan(page: Path, tmp_path: Path) -> None:
    with page_folder(tmp_path):
        for path in write_files(page.read_text(encoding="utf-8"), tmp_path):
            assert plan(load_pipeline(path)).tasks, path


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_console_examples_print_what_the_page_shows(page: Path, tmp_path: Path) -> None:
    text = page.read_text(encoding="utf-8")
    with page_folder(tmp_path):
        write_files(text, tmp_path)
        assert render_page(text) == text


def test_every_concept_has_a_page() -> None:
    names = {p.stem for p in PAGES}
    assert names >= {"index", "file-layout", "templates", "sweeps", "chains", "file-inputs",
                     "nodes", "validation", "planning"}  # fmt: skip


def _rewrite() -> None:  # pragma: no cover - a maintenance helper
    import tempfile

    for page in PAGES:
        with tempfile.TemporaryDirectory() as tmp, page_folder(Path(tmp)):
            text = page.read_text(encoding="utf-8")
            write_files(text, Path(tmp))
            page.write_text(render_page(text), encoding="utf-8")


if __name__ == "__main__":  # pragma: no cover
    _rewrite()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_yaml_examples_run_against_the_emulator(
    page: Path, tmp_path: Path, emulator: Emulator, api_key: str
) -> None:
    from rhflow.execute.runner import run

    with page_folder(tmp_path):
        for path in write_files(page.read_text(encoding="utf-8"), tmp_path):
            manifest = run(
                path,
                out=tmp_path / "out" / path.stem,
                limit=1,
                base_url=emulator.url,
                api_key=api_key,
            )
            failures = [(t.step, t.failure) for t in manifest.tasks if t.status != "succeeded"]
            assert manifest.status == "succeeded", (path.name, failures)

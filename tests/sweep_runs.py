"""Real sweeps against the emulator, for the tests of grid, report, diff and manifest merge."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from rhflow.emulator import Emulator, EmulatorConfig
from rhflow.execute.runner import run
from rhflow.record.manifest import Manifest

T2I = "1904136902449209346"


def write_sweep(
    folder: Path,
    *,
    name: str = "sweep",
    subjects: tuple[str, ...] = ("cat", "dog", "fox"),
    seeds: tuple[int, ...] = (1, 2),
    exclude: str = "[]",
    width: int = 64,
    height: int = 48,
    file: str = "sweep.yaml",
) -> Path:
    """A subject x seed text-to-image sweep; files named SUBJECT-SEED.png."""
    path = folder / file
    path.write_text(f"""
version: 1
name: {name}
concurrency: 1
defaults: {{retries: 0}}
steps:
  portrait:
    workflow: "{T2I}"
    matrix:
      subject: [{", ".join(subjects)}]
      seed: [{", ".join(map(str, seeds))}]
      exclude: {exclude}
    nodes:
      "6": {{text: "a portrait of a {{{{ subject }}}}"}}
      "3": {{seed: "{{{{ seed }}}}", steps: 4}}
      "5": {{width: {width}, height: {height}}}
    outputs: "{{{{ subject }}}}-{{{{ seed }}}}.{{{{ ext }}}}"
""")
    return path


def run_sweep(path: Path, out: Path, emu: Emulator, api_key: str, **options: Any) -> Manifest:
    return run(path, out=out, base_url=emu.url, api_key=api_key, **options)


def fail_next_tasks(emu: Emulator, count: int = 1) -> None:
    """The next ``count`` tasks created on ``emu`` end FAILED (out of memory)."""
    requests.post(emu.url + "/emulator/faults", json={"fail_tasks": count}, timeout=5)


@contextmanager
def failed_first_sweep(folder: Path, seed: int) -> Iterator[Path]:
    """A 3 x 2 sweep run into ``folder/out`` on an emulator of its own (pixels from ``seed``)
    whose first task (cat, seed 1) failed; yields the output folder. For module fixtures,
    which cannot use the function-scoped ``make_emulator``."""
    config = EmulatorConfig(
        task_seconds=(0.2, 0.2), account="consumer", concurrency=50, seed=seed
    )  # a consumer key pays RH coins per task, which the report and grid show
    with Emulator(config) as emu:
        fail_next_tasks(emu)
        manifest = run_sweep(write_sweep(folder), folder / "out", emu, "any-key-will-do")
        assert [t.status for t in manifest.tasks].count("failed") == 1
        yield folder / "out"

"""Other people's RunningHub clients run against the emulator unchanged but for host and key.

The API document's own scripts are run by tests/test_emulator_doc_scripts.py; this file runs a
public SDK, ``runninghub-sdk`` (PyPI, pinned in the ``test`` extra), as its README uses it
(tests/clients/runninghub_sdk_trial.py), in a process of its own. A client written by someone
else, against the real service, is the measure of whether the emulator answers as that service
does where clients notice: envelopes, field names, states, uploads, the AI-app calls.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from rhflow.emulator import TEXT_APP, TEXT_TO_IMAGE, Emulator

pytestmark = pytest.mark.slow
TRIAL = Path(__file__).parent / "clients" / "runninghub_sdk_trial.py"


def test_the_runninghub_sdk_runs_its_readme_against_the_emulator(
    make_emulator: Callable[..., Emulator], api_key: str
) -> None:
    pytest.importorskip("runninghub_sdk", reason="install the test extra: pip install -e '.[test]'")
    emu = make_emulator(task_seconds=(0.3, 0.3))
    env = {**os.environ, "RH_BASE_URL": emu.url, "RH_API_KEY": api_key}
    run = subprocess.run(
        [sys.executable, str(TRIAL), TEXT_TO_IMAGE, TEXT_APP],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    seen: dict[str, list[str]] = {}
    for line in run.stdout.splitlines():
        name, sep, value = line.partition(": ")
        if sep:
            seen.setdefault(name, []).append(value)
    assert seen["created"] == ["QUEUED"]
    assert seen["file_url"][0].startswith(f"{emu.url}/files/")
    assert seen["status"] == ["SUCCESS"]
    assert seen["downloaded"] == ["True"]
    assert seen["account"] == ["EXCLUSIVE 0"]
    assert seen["workflow nodes"] == ["['3', '4', '5']"]
    assert seen["uploaded"] == ["True"]
    assert "6.text" in seen["app fields"][0]
    assert seen["after cancel"] == ["FAILED"]  # as a proxy of the real service reports it
    assert seen["app outputs"] == ["1"]
    assert seen["async file_url"][0].startswith(f"{emu.url}/files/")
    stats = emu.stats()
    assert stats["tasks"]["created"] == 4

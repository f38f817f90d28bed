"""``rhflow validate`` never passes a check it could not make: a step whose workflow graph
could not be had gets a ``not checked`` line that says why, ``--strict`` turns those into a
failure, and ``--json`` gives every finding as an object."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rhflow.cli import main
from rhflow.emulator import Emulator

EmulatorFactory = Callable[..., Emulator]
KNOWN = "1904136902449209346"  # a workflow the emulator serves (t2i)
CLOUD_STEP = """\
version: 1
steps:
  gen:
    workflow: "{id}"
    nodes: {{"33": {{seed: 1}}}}
"""


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def cloud_step(tmp_path: Path, workflow_id: str = KNOWN) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(CLOUD_STEP.format(id=workflow_id))
    return path


def validate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["validate", *args])
    out, err = capsys.readouterr()
    return code, out, err


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_without_a_key_each_cloud_step_says_its_overrides_were_not_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud_step(tmp_path)
    code, out, _ = validate(capsys, "p.yaml")
    assert code == 0
    assert out.splitlines() == [
        "p.yaml: ok (1 task)",
        f"p.yaml:4:5: steps.gen: overrides not checked: no API key to fetch workflow {KNOWN} "
        "(set RH_API_KEY), or add workflow_file: (the workflow's API-format JSON) to check "
        "them offline",
    ]
    assert validate(capsys, "--strict", "p.yaml")[0] == 1


def test_with_the_right_key_the_missing_node_is_found(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud_step(tmp_path)
    code, out, _ = validate(capsys, "p.yaml", "--base-url", emulator.url, "--api-key", "k" * 32)
    assert code == 1
    assert out.startswith("p.yaml:5:13: steps.gen.nodes.33: node '33' is not in the workflow")
    assert "not checked" not in out


def test_a_wrong_key_is_named_as_the_reason(
    make_emulator: EmulatorFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = make_emulator(api_keys=("right-key-0123456789abcdef",))
    cloud_step(tmp_path)
    code, out, _ = validate(capsys, "p.yaml", "--base-url", emu.url, "--api-key", "w" * 32)
    assert code == 0
    (line,) = [x for x in out.splitlines() if "not checked" in x]
    assert line.startswith("p.yaml:4:5: steps.gen: overrides not checked: the server refused")
    assert "check RH_API_KEY" in line and "w" * 32 not in out


def test_an_unknown_workflow_id_is_named_as_the_reason(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud_step(tmp_path, "1999999999999999999")
    code, out, _ = validate(
        capsys, "--strict", "p.yaml", "--base-url", emulator.url, "--api-key", "k" * 32
    )
    assert code == 1
    assert "overrides not checked: the server does not know workflow 1999999999999999999" in out


def test_an_unreachable_server_is_named_once_and_validate_stays_quick(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "p.yaml").write_text(
        CLOUD_STEP.format(id=KNOWN)
        + '  other:\n    workflow: "1904136902449209347"\n    nodes: {"3": {seed: 2}}\n'
    )
    url = f"http://127.0.0.1:{closed_port()}"
    started = time.monotonic()
    code, out, err = validate(capsys, "p.yaml", "--base-url", url, "--api-key", "k" * 32)
    took = time.monotonic() - started
    assert code == 0 and err == ""
    unchecked = [x for x in out.splitlines() if "not checked" in x]
    assert len(unchecked) == 2
    assert all("cannot reach 127.0.0.1:" in x for x in unchecked)
    assert took < 30  # not a speed target: a hang or a retry storm would take minutes


def test_a_step_with_its_workflow_file_is_checked_offline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = Path(__file__).parent.parent
    code, out, _ = validate(capsys, "--strict", str(root / "pipelines" / "sweep.yaml"))
    assert code == 0
    assert "not checked" not in out


def test_an_ai_app_step_says_rhflow_cannot_check_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "app.yaml").write_text(
        'version: 1\nsteps:\n  a:\n    app: "1877265245566922753"\n    nodes: {"5": {text: hi}}\n'
    )
    code, out, _ = validate(capsys, "app.yaml")
    assert code == 0
    assert "app.yaml:4:5: steps.a: overrides not checked: rhflow cannot read an AI app's" in out


def test_json_lists_problems_and_unchecked_steps_as_objects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud_step(tmp_path)
    bad = "version: 1\nsteps:\n  a:\n    workflow: '1'\n    nedds: b\n"
    (tmp_path / "bad.yaml").write_text(bad)
    code, out, _ = validate(capsys, "--json", "p.yaml", "bad.yaml")
    assert code == 1
    report = json.loads(out)
    assert (report["ok"], report["checked"], report["exit_code"]) == (False, False, 1)
    good, bad = report["files"]
    assert (good["file"], good["ok"], good["tasks"], good["checked"]) == ("p.yaml", True, 1, False)
    (unchecked,) = good["problems"]
    assert unchecked["kind"] == "not_checked" and unchecked["path"] == "steps.gen"
    assert (unchecked["line"], unchecked["col"]) == (4, 5)
    assert bad["ok"] is False and bad["tasks"] is None
    assert bad["problems"] and all(p["kind"] == "error" for p in bad["problems"])
    assert bad["problems"][0]["line"] == 5

"""The command line around the commands: ``rhflow schema``, shell completion, ``-v`` request
logging and NO_COLOR."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import pytest

from rhflow.cli import main
from rhflow.emulator import Emulator

ROOT = Path(__file__).resolve().parent.parent


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RH_", "_RHFLOW"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


@pytest.mark.parametrize("name", ["pipeline", "manifest"])
def test_schema_prints_the_shipped_schema(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", name]) == 0
    printed = capsys.readouterr().out
    assert printed == (ROOT / "schemas" / f"{name}.schema.json").read_text(encoding="utf-8")
    jsonschema.Draft202012Validator.check_schema(json.loads(printed))


def test_schema_defaults_to_the_pipeline_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "rhflow pipeline"


def test_schema_refuses_an_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "workflow"]) == 2
    assert "'workflow' is not one of 'pipeline', 'manifest'" in capsys.readouterr().err


# -- completion ------------------------------------------------------------------------------


@pytest.fixture
def rhflow_on_path(tmp_path: Path) -> Path:
    """A ``rhflow`` executable that runs this checkout (what the completion script calls)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "rhflow"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m rhflow "$@"\n')
    script.chmod(0o755)
    return bin_dir


@pytest.mark.parametrize(
    ("shell", "marker"),
    [
        ("bash", "complete -o nosort -F _rhflow_completion rhflow"),
        ("zsh", "compdef _rhflow_completion rhflow"),
        ("fish", "complete --no-files --command rhflow"),
    ],
)
def test_completion_script_is_produced(shell: str, marker: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rhflow"],
        env=_env(_RHFLOW_COMPLETE=f"{shell}_source"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert marker in done.stdout
    assert "_RHFLOW_COMPLETE" in done.stdout


def test_bash_completes_commands_and_options(rhflow_on_path: Path) -> None:
    """The script, sourced in a real bash, completes command names and a command's options."""
    script = """
eval "$(_RHFLOW_COMPLETE=bash_source rhflow)"
complete_line() {  # what bash does on TAB: set the words, call the function with the command
  COMPREPLY=(); COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _rhflow_completion rhflow
  echo "${COMPREPLY[*]}"
}
complete_line rhflow sch
complete_line rhflow schema ''
complete_line rhflow run --fail-
"""
    env = _env(PATH=f"{rhflow_on_path}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(
        ["bash", "--norc", "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["schema", "pipeline manifest", "--fail-fast"]


# -- -v and NO_COLOR -------------------------------------------------------------------------


def test_verbose_logs_each_request_without_the_key(
    emulator: Emulator, api_key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-v", "account", "--base-url", emulator.url, "--api-key", api_key]) == 0
    err = capsys.readouterr().err
    assert re.fullmatch(
        r"rhflow: POST /uc/openapi/accountStatus -> HTTP 200, code 0 in \d+\.\d{3} s\n", err
    ), err
    assert main(["account", "--base-url", emulator.url, "--api-key", api_key]) == 0
    assert capsys.readouterr().err == ""  # without -v, nothing (and no handler left behind)


def test_verbose_masks_every_key_of_a_pool(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    from rhflow.commands.verbose import LOGGER, enable

    first, second = "a" * 32, "b" * 32
    monkeypatch.setenv("RH_API_KEY", f"{first}, {second}")
    stop = enable()
    try:
        logging.getLogger(LOGGER).info("a message quoting %s and %s", first, second)
    finally:
        stop()
    err = capsys.readouterr().err
    assert err.startswith("rhflow: a message quoting ")
    assert first not in err and second not in err


def test_verbose_logs_refusals_with_their_name(
    emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["-v", "inspect", "app:42", "--base-url", emulator.url, "--api-key", "k" * 32]) != 0
    err = capsys.readouterr().err
    assert re.search(r"rhflow: GET /api/webapp/apiCallDemo -> HTTP 200, code 901 in ", err), err
    assert "k" * 32 not in err


def test_verbose_run_logs_creates_outputs_and_downloads(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rhflow",
            "-v",
            "run",
            str(ROOT / "pipelines" / "sweep.yaml"),
            "--emulator",
            "--quiet",
            "--limit",
            "1",
            "--out",
            str(tmp_path / "out"),
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert any(
        re.match(r"rhflow: POST /task/openapi/create -> HTTP 200, code 0 in ", x) for x in lines
    )
    assert any(
        re.match(r"rhflow: GET http://127\.0\.0\.1:\d+/files/\S+ -> HTTP 200 in ", x) for x in lines
    )
    assert "emulator-key-not-secret" not in done.stderr


def _run_on_a_terminal(tmp_path: Path, **env: str) -> bytes:
    """``rhflow run --emulator`` with stderr on a pseudo-terminal: what a person sees."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rhflow",
            "run",
            str(ROOT / "pipelines" / "sweep.yaml"),
            "--emulator",
            "--limit",
            "1",
            "--out",
            str(tmp_path / "out"),
        ],
        env=_env(TERM="xterm-256color", COLUMNS="100", **env),
        stdout=slave,
        stderr=slave,
        stdin=subprocess.DEVNULL,
    )
    os.close(slave)
    seen = bytearray()
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            proc.kill()
            raise AssertionError(f"no output for 60 s: {bytes(seen)!r}")
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the other side closed
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0, bytes(seen)
    return bytes(seen)


_COLOUR = re.compile(rb"\x1b\[[0-9;]*(?:3[0-9]|9[0-7]|38;[25];[0-9;]+)m")


def test_no_color_is_honoured_on_a_terminal(tmp_path: Path) -> None:
    coloured = _run_on_a_terminal(tmp_path / "a")
    assert _COLOUR.search(coloured), "the live display uses colour on a terminal"
    plain = _run_on_a_terminal(tmp_path / "b", NO_COLOR="1")
    assert b"succeeded" in plain
    assert not _COLOUR.search(plain), plain


@pytest.mark.slow
def test_the_wheel_ships_both_schemas(tmp_path: Path) -> None:
    """``rhflow schema`` reads the schemas from the package: a wheel must carry them."""
    pytest.importorskip("hatchling", reason="hatchling is not installed: pip install '.[test]'")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(tmp_path)],
        capture_output=True, text=True, timeout=300, env=_env(PIP_CONFIG_FILE=os.devnull),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    [wheel] = tmp_path.glob("rhflow-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for name in ("pipeline", "manifest"):
            shipped = archive.read(f"rhflow/schemas/{name}.schema.json").decode()
            assert shipped == (ROOT / "schemas" / f"{name}.schema.json").read_text("utf-8")

"""The README documents every command and option, and opens with the two fresh-machine commands."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import click
import pytest

from rhflow.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _commands() -> list[tuple[str, click.Command]]:
    assert isinstance(cli, click.Group)
    return sorted(cli.commands.items())


@pytest.mark.parametrize(("name", "command"), _commands())
def test_every_command_is_documented_in_readme(name: str, command: click.Command) -> None:
    assert f"rhflow {name}" in README, f"README.md does not show `rhflow {name}`"
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            longest = max(param.opts, key=len)
            if longest in ("--help",):
                continue
            assert longest in README, f"README.md does not mention `{longest}` of rhflow {name}"


def test_readme_opens_with_the_two_commands() -> None:
    blocks = re.findall(r"```(?:sh|bash|console)?\n(.*?)```", README, flags=re.S)
    first, second = blocks[0].strip(), blocks[1].strip()
    assert "--emulator" in first and "rhflow run" in first
    assert "pytest" in second


def test_ci_runs_the_readme_test_command() -> None:
    blocks = re.findall(r"```(?:sh|bash|console)?\n(.*?)```", README, flags=re.S)
    test_command = blocks[1].strip().splitlines()[-1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert test_command in ci.splitlines()


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_readme_python_examples_run(
    index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(ROOT / "pipelines", tmp_path / "pipelines")
    monkeypatch.chdir(tmp_path)
    exec(compile(_python_blocks()[index], f"README.md python block {index + 1}", "exec"), {})
    printed = capsys.readouterr().out
    assert printed.strip(), "the example printed nothing"
    assert "Traceback" not in printed

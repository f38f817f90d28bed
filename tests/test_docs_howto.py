"""The shell examples of the how-to pages on everyday commands run as written.

Each ``sh`` block line runs with bash in a fresh folder holding a copy of ``pipelines/``, with
``rhflow`` on PATH (this checkout) and, for the lines that need a key, ``RH_BASE_URL`` and
``RH_API_KEY`` pointing at a loopback emulator.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from rhflow.emulator import Emulator
from tests.doc_console import check_block, console_blocks

ROOT = Path(__file__).resolve().parent.parent
HOWTO = ROOT / "docs" / "how-to"


def shell_lines(page: Path, fence: str = "sh") -> list[tuple[str, int]]:
    """The commands of a page's ``sh`` blocks (or those whose fence says ``fence``, such as
    ``sh enterprise``; comments after two spaces dropped), each with the exit code it should
    end with: 0, or N where the comment says ``# exit N``."""
    text = page.read_text(encoding="utf-8")
    blocks = re.findall(rf"^```{re.escape(fence)}\n(.*?)^```$", text, re.M | re.S)
    found = []
    for line in (line for block in blocks for line in block.splitlines()):
        command, _, comment = line.partition("  #")
        expected = re.match(r"\s*exit (\d+)", comment)
        if command.strip():
            found.append((command.strip(), int(expected.group(1)) if expected else 0))
    return found


def run_page(
    page: Path, folder: Path, emulator: Emulator, api_key: str, fence: str = "sh"
) -> list[subprocess.CompletedProcess[str]]:
    """Run every example of ``page`` (of its blocks fenced ``fence``) in ``folder``; return
    each one's outcome."""
    shutil.copytree(ROOT / "pipelines", folder / "pipelines")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RH_", "NO_COLOR"))}
    env |= {
        "PYTHONPATH": str(ROOT),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "RH_BASE_URL": emulator.url,
        "RH_API_KEY": api_key,
        "XDG_CACHE_HOME": str(folder / ".cache"),
    }
    runs = []
    for line, expected in shell_lines(page, fence):
        done = subprocess.run(
            ["bash", "-c", line], cwd=folder, env=env, capture_output=True, text=True,
            timeout=180,
        )  # fmt: skip
        assert done.returncode == expected, f"{page.name}: {line}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr, line
        assert api_key not in done.stdout + done.stderr, line
        runs.append(done)
    return runs


@pytest.mark.slow
def test_editor_and_shell_examples_run(tmp_path: Path, emulator: Emulator, api_key: str) -> None:
    run_page(HOWTO / "editor-and-shell.md", tmp_path, emulator, api_key)
    shipped = json.loads((ROOT / "schemas" / "pipeline.schema.json").read_text())
    assert json.loads((tmp_path / "pipeline.schema.json").read_text()) == shipped
    assert (
        "complete -o nosort -F _rhflow_completion rhflow"
        in (tmp_path / "rhflow-complete.bash").read_text()
    )
    assert len(list((tmp_path / "out" / "plain").rglob("*.png"))) == 1  # --limit 1


@pytest.mark.slow
def test_costs_examples_run(tmp_path: Path, emulator: Emulator) -> None:
    api_key = "a-key-of-this-test-only-0123456789"  # its balance is untouched by other tests
    runs = {
        done.args[-1]: done for done in run_page(HOWTO / "costs.md", tmp_path, emulator, api_key)
    }
    spent = 2 + 3  # the two cats, then three tasks up to --max-coins 3
    assert runs["rhflow account"].stdout == (
        f"server:        {emulator.url}\n"
        f"coins:         {100000 - spent}\n"
        "running tasks: 0\n"
        "key type:      NORMAL\n"
    )
    assert json.loads(runs["rhflow account --json"].stdout)["remain_coins"] == 100000 - spent
    plan = runs["rhflow plan pipelines/sweep.yaml --set style=ink"].stdout
    assert re.search(r"^portrait +6 +0 +6 coins +\d+ s$", plan, re.M), plan
    assert "from out/sweep/manifest.json; time with 4 at a time)" in plan
    capped = json.loads((tmp_path / "out" / "capped" / "manifest.json").read_text())
    assert capped["budget"]["spent"] == 3 and capped["counts"]["pending"] == 3
    refused = runs["rhflow run pipelines/sweep.yaml --quiet --max-coins 3"]
    assert refused.stderr.startswith("Error: this run is estimated at 4 coins, over --max-coins 3")
    text = (HOWTO / "costs.md").read_text()
    shown = [b for b in console_blocks(text) if "--max-money" not in b]
    assert len(shown) == 2  # the estimate and the account, as the page shows them
    for body in shown:
        check_block(body, runs, folder=tmp_path, server=emulator.url)


@pytest.mark.slow
def test_costs_enterprise_examples_print_what_the_page_shows(
    tmp_path: Path, make_emulator: Callable[..., Emulator]
) -> None:
    """The money examples, against an emulator acting as an enterprise key (CNY)."""
    emu = make_emulator(account="enterprise", concurrency=50)
    page = HOWTO / "costs.md"
    runs = {
        done.args[-1]: done
        for done in run_page(page, tmp_path, emu, "an-enterprise-key-0123456789", "sh enterprise")
    }
    [shown] = [b for b in console_blocks(page.read_text()) if "--max-money" in b]
    check_block(shown, runs, folder=tmp_path, server=emu.url)
    capped = json.loads((tmp_path / "out" / "capped" / "manifest.json").read_text())
    assert capped["budget"]["spent_money"] == {"CNY": 0.01} and capped["budget"]["stopped"]


@pytest.mark.slow
def test_start_from_a_workflow_examples_run(
    tmp_path: Path, emulator: Emulator, api_key: str
) -> None:
    runs = {
        done.args[-1]: done
        for done in run_page(HOWTO / "start-from-a-workflow.md", tmp_path, emulator, api_key)
    }
    assert (tmp_path / "my-sweep" / "out" / "first-sweep" / "manifest.json").is_file()
    page = (HOWTO / "start-from-a-workflow.md").read_text(encoding="utf-8")
    table = runs["rhflow inspect 1904136902449209346 --emulator"].stdout
    assert table in page  # the table shown is the table printed
    assert runs["rhflow inspect 1904136902449209346"].stdout == table  # with a key: the same
    skeleton = (tmp_path / "pipeline.yaml").read_text()
    assert f"```yaml\n{skeleton}```" in page
    assert runs["rhflow validate pipeline.yaml"].stdout == "pipeline.yaml: ok (1 task)\n"
    data = json.loads(runs["rhflow inspect 1904136902449209346 --emulator --json"].stdout)
    assert len(data["nodes"]) == 7
    assert (
        "AI app 1877265245566922753"
        in runs["rhflow inspect app:1877265245566922753 --emulator"].stdout
    )
    # the image skeleton: validate warns about the image to come, run refuses until it is there
    warned = runs["rhflow validate restyle.yaml"]
    refused = runs["rhflow run restyle.yaml --emulator --out out/restyle --quiet"]
    console = (
        f"$ rhflow validate restyle.yaml\n{warned.stdout}{warned.stderr}"
        f"$ rhflow run restyle.yaml --emulator --out out/restyle --quiet\n{refused.stderr}"
    )
    assert f"```console\n{console}```" in page
    assert runs["rhflow validate --strict restyle.yaml"].stdout == "restyle.yaml: ok (1 task)\n"
    ran = runs["rhflow run restyle.yaml --emulator --out out/restyle"].stdout
    assert ran.startswith("main: succeeded: 1 succeeded, 0 failed (1 task)")
    assert len(list((tmp_path / "out" / "restyle").rglob("*.png"))) == 1


@pytest.mark.slow
def test_reproduce_page_key_pool_lines_run_as_written(
    tmp_path: Path, make_emulator: Callable[..., Emulator]
) -> None:
    """The pool block is one script (its ``export`` holds for the lines after it), run with
    two keys the emulator accepts; both runs share the six tasks between the two keys."""
    emu = make_emulator(account="consumer", concurrency=2, task_seconds=(0.3, 0.3))
    page = HOWTO / "reproduce.md"
    [block] = re.findall(r"^```sh pool\n(.*?)^```$", page.read_text(), re.M | re.S)
    shutil.copytree(ROOT / "pipelines", tmp_path / "pipelines")
    keys = {"KEY_ONE": "pool-key-one-0123456789abcdef", "KEY_TWO": "pool-key-two-0123456789abcdef"}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RH_", "NO_COLOR"))}
    env |= {
        "PYTHONPATH": str(ROOT),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "RH_BASE_URL": emu.url,
        "XDG_CACHE_HOME": str(tmp_path / ".cache"),
        **keys,
    }
    done = subprocess.run(
        ["bash", "-e", "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert not any(key in done.stdout + done.stderr for key in keys.values())
    manifest = json.loads((tmp_path / "out" / "sweep" / "manifest.json").read_text())
    assert manifest["counts"]["succeeded"] == 6
    assert len({task["key"] for task in manifest["tasks"]}) == 2  # both keys ran tasks
    assert emu.stats()["tasks"]["created"] == 6  # the second line resumed: nothing again

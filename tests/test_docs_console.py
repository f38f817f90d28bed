"""The ``console`` transcripts of README and the how-to pages run as shown: each ``$`` command
runs in a real process (a real SIGINT where the transcript shows ``^C``) and prints, in its
essentials, what the page shows (``tests/doc_console.py`` says what varies and is left out).

Commands that need a key run against a loopback emulator through ``RH_BASE_URL`` and
``RH_API_KEY``; the pages say so next to them.
"""

from __future__ import annotations

import copy
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
from rhflow.emulator.workflows import BUILTIN_WORKFLOWS, TEXT_TO_IMAGE
from tests.doc_console import compare, console_blocks, run_block, serving, transcript
from tests.test_docs_howto import shell_lines

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
KEY = "a-key-of-the-docs-tests-0123456789"


def environment(folder: Path, emu: Emulator | None = None) -> dict[str, str]:
    """A user's shell: rhflow of this checkout on PATH, a cache of the folder's own, and the
    key and server of ``emu`` when given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RH_", "NO_COLOR"))}
    env |= {
        "PYTHONPATH": str(ROOT),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "XDG_CACHE_HOME": str(folder / ".cache"),
    }
    if emu is not None:
        env |= {"RH_BASE_URL": emu.url, "RH_API_KEY": KEY}
    return env


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "pipelines", tmp_path / "pipelines")
    return tmp_path


@pytest.fixture
def slow_tasks(make_emulator: Callable[..., Emulator]) -> Emulator:
    """Tasks of 1-4 s that pay coins: time to press Ctrl-C mid-run."""
    return make_emulator(account="consumer", concurrency=50, task_seconds=(1.0, 4.0))


@pytest.mark.slow
def test_resume_page_ctrl_c_detach_status_and_cancel(tmp_path: Path, slow_tasks: Emulator) -> None:
    """A task in flight may end in the very moment of Ctrl-C (it is then kept, not cancelled,
    and the counts differ from the page's): a machine under load makes that likelier, so the
    page is tried up to three times, each in a new folder."""
    text = (DOCS / "how-to" / "resume.md").read_text(encoding="utf-8")
    blocks = console_blocks(text)
    assert len(blocks) == 4 and sum(b.count("\n^C\n") for b in blocks) == 3
    shown_as = {f"{slow_tasks.url} (an emulator)": "https://www.runninghub.cn:443"}
    unfinished = {f"rhflow status out/{name}": 3 for name in ("detached", "left", "sweep")}
    for attempt in range(3):
        folder = tmp_path / f"try-{attempt}"
        shutil.copytree(ROOT / "pipelines", folder / "pipelines")
        env = environment(folder, slow_tasks)
        try:
            for body in blocks:
                run_block(
                    body, folder, env, server=slow_tasks.url, shown_as=shown_as, codes=unfinished
                )
        except AssertionError:
            if attempt == 2:
                raise
            continue
        assert len(list((folder / "out" / "detached" / "portrait").glob("*.png"))) == 6
        break


@pytest.mark.slow
def test_readme_console_blocks(folder: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    # the pipeline file README shows, saved as portraits.yaml beside a workflows/ folder
    (portraits,) = [b for b in re.findall(r"^```yaml\n(.*?)^```$", readme, re.M | re.S)
                    if "name: portraits" in b]  # fmt: skip
    (folder / "portraits.yaml").write_text(portraits, encoding="utf-8")
    shutil.copytree(ROOT / "pipelines" / "workflows", folder / "workflows")
    invalid = folder / "tests" / "examples" / "invalid"
    invalid.mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "examples" / "invalid" / "many-problems.yaml", invalid)
    env = environment(folder)
    served = [b for b in console_blocks(readme) if b.startswith("$ rhflow emulator")]
    for body in console_blocks(readme):
        if body in served:
            continue
        run_block(body, folder, env, codes={_validate_all(body): 1} if "invalid" in body else {})
    for body in served:
        _serve(body, folder, env)


def _validate_all(body: str) -> str:
    return transcript(body)[0][0]


def _serve(body: str, folder: Path, env: dict[str, str]) -> None:
    """``rhflow emulator --port P ...`` prints its URL once ready (on a free port here)."""
    [(command, shown)] = transcript(body)
    with serving(command, folder, env) as (line, url):
        compare(command, shown, line.replace(url, _page_url(command)))


def _page_url(command: str) -> str:
    port = re.search(r"--port (\d+)", command)
    assert port is not None, command
    return f"http://127.0.0.1:{port.group(1)}"


@pytest.mark.slow
def test_emulator_and_client_pages_run_against_the_emulator_they_start(folder: Path) -> None:
    """Each page starts ``rhflow emulator`` in its first block and points the rest at it."""
    env = environment(folder)
    client_page = (DOCS / "reference" / "client.md").read_text(encoding="utf-8")
    (example,) = re.findall(r"^```python\n(.*?)^```$", client_page, re.M | re.S)[:1]
    (folder / "example.py").write_text(example, encoding="utf-8")
    for name in ("emulator.md", "client.md"):
        first, *rest = console_blocks((DOCS / "reference" / name).read_text(encoding="utf-8"))
        [(command, shown)] = transcript(first)
        with serving(command, folder, env) as (line, url):
            page_url = _page_url(command)
            compare(command, shown, line.replace(url, page_url))
            for body in rest:
                run_block(body, folder, env, shown_as={url: page_url}, rewrite={page_url: url})


@pytest.mark.slow
def test_results_page_diff_prints_what_the_page_shows(folder: Path) -> None:
    text = (DOCS / "how-to" / "results.md").read_text(encoding="utf-8")
    env = environment(folder)
    shown = {command for body in console_blocks(text) for command, _ in transcript(body)}
    for line, _ in shell_lines(DOCS / "how-to" / "results.md"):
        if line not in shown:  # what the transcripts need done first
            done = subprocess.run(["bash", "-c", line], cwd=folder, env=env, capture_output=True,
                                  text=True, timeout=180)  # fmt: skip
            assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
    for body in console_blocks(text):
        run_block(body, folder, env, codes={"rhflow diff": 1} | _diffs(body))


def _diffs(body: str) -> dict[str, int]:
    """``rhflow diff`` exits 1 when the runs differ, as the page shows them doing."""
    return {c: 1 for c, _ in transcript(body) if c.startswith("rhflow diff ")}


@pytest.mark.slow
def test_reproduce_page_lock_then_a_workflow_changed_on_the_server(
    folder: Path, make_emulator: Callable[..., Emulator]
) -> None:
    """The lock's transcripts, with the served workflow edited between them (the page says
    its steps changed on the server)."""
    page = (DOCS / "how-to" / "reproduce.md").read_text(encoding="utf-8")
    (cloud,) = re.findall(r"^```yaml file=cloud.yaml\n(.*?)^```$", page, re.M | re.S)
    (folder / "cloud.yaml").write_text(cloud, encoding="utf-8")
    served = folder / "served"
    served.mkdir()
    graph = copy.deepcopy(BUILTIN_WORKFLOWS[TEXT_TO_IMAGE])
    (served / f"{TEXT_TO_IMAGE}.json").write_text(json.dumps(graph))
    emu = make_emulator(account="consumer", concurrency=50, workflows_dir=str(served))
    env = environment(folder, emu)
    locking, running = console_blocks(page)
    run_block(locking, folder, env, server=emu.url)
    graph["3"]["inputs"]["steps"] = 30  # edited on the website, behind the same id
    (served / f"{TEXT_TO_IMAGE}.json").write_text(json.dumps(graph))
    run_block(running, folder, env, server=emu.url, codes={"rhflow run cloud.yaml --frozen": 2})


@pytest.mark.slow
def test_scheduler_page_no_key_progress_and_a_failed_run(
    folder: Path, make_emulator: Callable[..., Emulator]
) -> None:
    no_key, shown, failed = console_blocks(
        (DOCS / "explanation" / "scheduler.md").read_text(encoding="utf-8")
    )
    run_block(no_key, folder, environment(folder), codes={"rhflow run pipelines/sweep.yaml": 2})
    run_block(shown, folder, environment(folder))
    emu = make_emulator(account="consumer", concurrency=50, task_seconds=(0.5, 1.0))
    run_block(failed, folder, environment(folder, emu), server=emu.url,
              codes={transcript(failed)[1][0]: 1})  # fmt: skip


@pytest.mark.slow
def test_editor_and_shell_page_verbose_transcript(folder: Path) -> None:
    (body,) = console_blocks((DOCS / "how-to" / "editor-and-shell.md").read_text(encoding="utf-8"))
    [done] = run_block(body, folder, environment(folder))
    assert "POST /task/openapi/create -> HTTP 200, code 0" in done.stdout


@pytest.mark.slow
def test_scheduler_page_json_events_have_the_keys_a_run_prints(folder: Path) -> None:
    """The page's ``--json`` lines are examples (their values vary); each has the keys of the
    event of that name a run prints."""
    page = (DOCS / "explanation" / "scheduler.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"^```json\n(.*?)^```$", page, re.M | re.S)
    shown = [json.loads(line) for line in block.splitlines()]
    done = subprocess.run(
        ["rhflow", "run", "pipelines/sweep.yaml", "--emulator", "--json", "--limit", "1"],
        cwd=folder, env=environment(folder), capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    printed = {e["event"]: set(e) for e in map(json.loads, done.stdout.splitlines())}
    for event in shown:
        assert set(event) == printed.get(event["event"]), event["event"]

"""The GitHub Actions recipe in docs/ci/rhflow.yml works: its shell steps run against the emulator.

The workflow's YAML is parsed and each job played here as GitHub would, in its own folder: a
``run:`` step runs in bash with the workflow's, job's and step's ``env`` and with ``${{ ... }}``
replaced (the matrix value, the emulator's URL and key for the secrets); ``actions/checkout``
copies this repository's pipelines (the base branch's, or the pull request's, which changes a
variable); ``upload-artifact`` and ``download-artifact`` copy folders between jobs. Only the
installation (rhflow is installed already) and the GitHub comment are not run; the comment's
file is checked instead.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from rhflow.emulator import Emulator

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "docs" / "ci" / "rhflow.yml"
SCHEMA = json.loads((ROOT / "schemas" / "manifest.schema.json").read_text())
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def load_workflow() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    return data


class Runner:
    """Plays the jobs of the workflow for one event, sharing artifacts between them."""

    def __init__(self, tmp: Path, emulator: Emulator, api_key: str, event: str) -> None:
        self.tmp, self.event = tmp, event
        self.artifacts: dict[str, Path] = {}
        self.values = {
            "secrets.RH_API_KEY": api_key,
            "vars.RH_BASE_URL || 'https://www.runninghub.cn'": emulator.url,
            "github.event.pull_request.base.sha": "base",
            "github.event.pull_request.number": "7",
            "github.token": "not-a-token",
            "github.repository": "owner/repo",
        }
        self.workflow = load_workflow()
        self.comments: list[str] = []

    def substitute(self, text: str, matrix: dict[str, Any]) -> str:
        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("matrix."):
                return str(matrix[name.removeprefix("matrix.")])
            assert name in self.values, f"the test does not know ${{{{ {name} }}}}"
            return self.values[name]

        return EXPRESSION.sub(value, str(text))

    def run_job(self, name: str, matrix: dict[str, Any] | None = None) -> Path:
        job = self.workflow["jobs"][name]
        matrix = matrix or {}
        folder = self.tmp / f"{name}-{'-'.join(map(str, matrix.values())) or 'job'}"
        folder.mkdir()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
        for key, val in {**self.workflow.get("env", {}), **job.get("env", {})}.items():
            env[key] = self.substitute(val, matrix)
        for step in job["steps"]:
            if "uses" in step:
                self.use(step, folder, matrix)
            else:
                self.run(step, folder, env, matrix)
        return folder

    def use(self, step: dict[str, Any], folder: Path, matrix: dict[str, Any]) -> None:
        action = step["uses"].split("@")[0]
        given = {k: self.substitute(v, matrix) for k, v in step.get("with", {}).items()}
        if action == "actions/checkout":
            source = self.tmp / ("base" if given.get("ref") == "base" else "head")
            shutil.copytree(source, folder / given.get("path", "."), dirs_exist_ok=True)
        elif action == "actions/upload-artifact":
            ignore = shutil.ignore_patterns(".*")  # upload-artifact leaves hidden files out
            self.artifacts[given["name"]] = self.tmp / "artifacts" / given["name"]
            shutil.copytree(folder / given["path"], self.artifacts[given["name"]], ignore=ignore)
        elif action == "actions/download-artifact":
            for name, path in self.artifacts.items():
                if fnmatch.fnmatch(name, given["pattern"]):
                    shutil.copytree(path, folder / given["path"] / name)
        else:
            assert action == "actions/setup-python", f"the test cannot play {action}"

    def run(
        self, step: dict[str, Any], folder: Path, env: dict[str, str], matrix: dict[str, Any]
    ) -> None:
        script = self.substitute(step["run"], matrix)
        step_env = {
            **env,
            **{k: self.substitute(v, matrix) for k, v in step.get("env", {}).items()},
        }
        if script.startswith("pip install "):
            return  # rhflow is installed in this environment already
        if script.startswith("gh pr comment "):
            body = re.search(r"--body-file (\S+)", script)
            assert body, script
            self.comments.append((folder / body.group(1)).read_text(encoding="utf-8"))
            return
        done = subprocess.run(
            ["bash", "-e", "-c", script], cwd=folder, env=step_env, capture_output=True,
            text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, f"{script}\n{done.stdout}\n{done.stderr}"


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    """The base branch and the pull request: the pull request paints in ink."""
    for name in ("base", "head"):
        shutil.copytree(ROOT / "pipelines", tmp_path / name / "pipelines")
    sweep = tmp_path / "head" / "pipelines" / "sweep.yaml"
    sweep.write_text(sweep.read_text().replace("style: watercolor", "style: ink"))
    return tmp_path


def test_the_docs_show_the_workflow_as_it_is() -> None:
    page = (ROOT / "docs" / "how-to" / "ci.md").read_text(encoding="utf-8")
    assert f"```yaml\n{WORKFLOW.read_text(encoding='utf-8')}```" in page


def test_the_jobs_run_on_the_events_they_are_for() -> None:
    jobs = load_workflow()["jobs"]
    for name in ("validate", "compare"):
        assert "github.event_name == 'pull_request'" in jobs[name]["if"]
    for name in ("sweep", "report"):
        assert "github.event_name == 'push'" in jobs[name]["if"]
    assert jobs["report"]["needs"] == "sweep" and "always()" in jobs["report"]["if"]
    assert jobs["sweep"]["strategy"]["matrix"]["shard"] == [1, 2, 3, 4]
    assert load_workflow()[True] == {"pull_request": None, "push": {"branches": ["main"]}}


@pytest.mark.slow
def test_main_runs_the_shards_then_merges_them_and_builds_the_report(
    repository: Path, emulator: Emulator, api_key: str
) -> None:
    runner = Runner(repository, emulator, api_key, "push")
    for shard in load_workflow()["jobs"]["sweep"]["strategy"]["matrix"]["shard"]:
        runner.run_job("sweep", {"shard": shard})
    assert sorted(runner.artifacts) == ["shard-1", "shard-2", "shard-3", "shard-4"]
    folder = runner.run_job("report")
    merged = json.loads((folder / "out" / "manifest.json").read_text())
    jsonschema.validate(merged, SCHEMA)
    assert merged["counts"]["total"] == merged["counts"]["succeeded"] == 6
    for task in merged["tasks"]:
        for output in task["outputs"]:
            assert (folder / "out" / output["path"]).is_file()
    report = runner.artifacts["report"] / "report.html"
    assert report.is_file()
    assert len(re.findall(r"<img ", report.read_text(encoding="utf-8"))) == 6


@pytest.mark.slow
def test_a_pull_request_is_validated_and_its_diff_posted(
    repository: Path, emulator: Emulator, api_key: str
) -> None:
    runner = Runner(repository, emulator, api_key, "pull_request")
    runner.run_job("validate")
    runner.run_job("compare")
    (comment,) = runner.comments
    assert comment.startswith(
        "### rhflow diff: base -> this pull request\n```\nchanged   portrait ["
    )
    assert "\n6 tasks: 6 changed, 0 added, 0 removed, 0 unchanged; coins 6 -> 6 (+0)" in comment
    assert (runner.artifacts["diff"] / "diff.html").is_file()

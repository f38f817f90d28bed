"""``.pre-commit-hooks.yaml``: another repository runs ``rhflow validate`` on its pipeline files
through pre-commit, checked with ``pre-commit try-repo`` on a temporary repository.

pre-commit installs rhflow into an environment of its own with pip. The test gives pip no
index at all (``PIP_NO_INDEX``, no pip configuration) and a folder of wheels packed from this
environment's installed distributions (``tests/wheelhouse.py``), so it needs no network.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from wheelhouse import build_wheelhouse

ROOT = Path(__file__).resolve().parent.parent
#: What a build of rhflow reads (pyproject's wheel and sdist targets).
SOURCES = ["pyproject.toml", "README.md", ".pre-commit-hooks.yaml", "rhflow", "schemas"]
INVALID = """\
version: 1
name: broken
steps:
  gen:
    workflow: "1904136902449209346"
    workflow_file: workflows/t2i.json
    nodes:
      "3": {seeed: 1}
"""


def _git(folder: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}  # fmt: skip
    subprocess.run(["git", "-C", str(folder), *args], check=True, env=env, capture_output=True)


def _repository(folder: Path, files: dict[str, str | Path]) -> Path:
    """A git repository holding ``files`` (text, or a file to copy), all committed."""
    folder.mkdir(parents=True)
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            if content.is_dir():
                shutil.copytree(content, path, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(content, path)
        else:
            path.write_text(content)
    _git(folder, "init", "-q")
    _git(folder, "add", "-A")
    _git(folder, "commit", "-q", "-m", "files")
    return folder


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment pre-commit runs in: its own home, pip with only local wheels."""
    pytest.importorskip("pre_commit", reason="pre-commit is not installed: pip install '.[test]'")
    try:
        import importlib.metadata as md

        md.distribution("hatchling")
    except md.PackageNotFoundError:
        pytest.skip("hatchling (rhflow's build backend) is not installed: pip install '.[test]'")
    base = tmp_path_factory.mktemp("pre-commit")
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    build_wheelhouse(base / "wheels", [*deps, "hatchling"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "RH_", "PRE_COMMIT"))}
    return env | {
        "PRE_COMMIT_HOME": str(base / "home"),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(base / "wheels"),
        "HOME": str(base),
    }


@pytest.fixture(scope="module")
def hooks_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A committed copy of this checkout's sources: what a user's pre-commit clones."""
    folder = tmp_path_factory.mktemp("rhflow-src") / "rhflow"
    return _repository(folder, {name: ROOT / name for name in SOURCES})


def _try_repo(repo: Path, hooks: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "try-repo", str(hooks), "rhflow-validate",
         "--all-files", "--color", "never"],
        cwd=repo, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.mark.slow
def test_hook_validates_pipeline_files_of_another_repository(
    tmp_path: Path, offline: dict[str, str], hooks_repo: Path
) -> None:
    workflow = ROOT / "pipelines" / "workflows" / "t2i.json"
    repo = _repository(
        tmp_path / "user",
        {
            "pipelines/good.yaml": ROOT / "pipelines" / "sweep.yaml",
            "pipelines/broken.yaml": INVALID,
            "pipelines/workflows/t2i.json": workflow,
            "config/other.yaml": "not: [a pipeline",  # outside pipelines/: not checked
        },
    )
    done = _try_repo(repo, hooks_repo, offline)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert re.search(r"^rhflow validate\.+Failed$", output, re.M), output
    assert "pipelines/broken.yaml:8:13: steps.gen.nodes.3.seeed: node 3 " in output, output
    assert "pipelines/good.yaml: ok (6 tasks)" in output
    assert "other.yaml" not in output


def test_the_documented_configuration_names_the_hook() -> None:
    import yaml

    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    [hook] = hooks
    assert (hook["id"], hook["entry"], hook["language"]) == (
        "rhflow-validate", "rhflow validate", "python",
    )  # fmt: skip
    page = (ROOT / "docs" / "how-to" / "editor-and-shell.md").read_text()
    config = yaml.safe_load(re.findall(r"```yaml\n(repos:.*?)```", page, re.S)[0])
    [documented] = config["repos"][0]["hooks"]
    assert documented["id"] == hook["id"]
    assert documented["files"] == "^pipelines/.*\\.ya?ml$"
    assert re.search(hook["files"], "pipelines/sweep.yaml")
    assert re.search(hook["files"], "sub/pipelines/a.yml")
    assert not re.search(hook["files"], "config/other.yaml")

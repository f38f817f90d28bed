"""``rhflow init``: a starter folder that validates, plans and runs against the emulator, and
that never overwrites a file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from rhflow.cli import main
from rhflow.pipeline.schema import pipeline_schema

FILES = ["pipeline.yaml", "workflows/text-to-image.json", "pipeline.schema.json", ".gitignore"]


def test_init_writes_a_folder_that_runs_with_the_emulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init", "my-sweep"]) == 0
    assert capsys.readouterr().out == "".join(f"wrote my-sweep/{name}\n" for name in FILES) + (
        "next: cd my-sweep && rhflow run pipeline.yaml --emulator\n"
    )
    folder = tmp_path / "my-sweep"
    assert json.loads((folder / "pipeline.schema.json").read_text()) == pipeline_schema()
    text = (folder / "pipeline.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=pipeline.schema.json\n")
    monkeypatch.chdir(folder)
    assert main(["validate", "pipeline.yaml"]) == 0
    assert capsys.readouterr().out == "pipeline.yaml: ok (4 tasks)\n"  # checked offline
    assert main(["run", "pipeline.yaml", "--emulator", "--quiet"]) == 0
    manifest = json.loads((folder / "out" / "first-sweep" / "manifest.json").read_text())
    assert manifest["status"] == "succeeded" and manifest["counts"]["succeeded"] == 4
    pictures = sorted(p.name for p in (folder / "out" / "first-sweep" / "picture").iterdir())
    assert pictures == ["cat-1.png", "cat-2.png", "lighthouse-1.png", "lighthouse-2.png"]
    with Image.open(folder / "out" / "first-sweep" / "picture" / "cat-1.png") as image:
        assert image.size == (256, 256)
    texts = {
        t["params"]["subject"]: t["node_info_list"][0]["fieldValue"] for t in manifest["tasks"]
    }
    assert texts == {"cat": "a cat, watercolor", "lighthouse": "a lighthouse, watercolor"}


def test_gitignore_keeps_outputs_out_of_git(tmp_path: Path) -> None:
    assert main(["init", str(tmp_path)]) == 0
    (tmp_path / "out" / "first-sweep").mkdir(parents=True)
    (tmp_path / "out" / "first-sweep" / "manifest.json").write_text("{}")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    status = subprocess.run(
        ["git", "-C", str(tmp_path), "status", "--porcelain", "--untracked-files=all"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert sorted(line[3:] for line in status.splitlines()) == sorted(FILES)


def test_init_refuses_to_overwrite_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / ".gitignore").write_text("mine\n")
    assert main(["init", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"Error: not overwriting {tmp_path}/.gitignore; nothing was written "
        "(choose another folder: rhflow init DIR)\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [".gitignore"]
    assert (tmp_path / ".gitignore").read_text() == "mine\n"


def test_init_into_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0
    assert capsys.readouterr().out.endswith("next: rhflow run pipeline.yaml --emulator\n")
    assert all((tmp_path / name).is_file() for name in FILES)
    assert main(["init"]) == 2
    assert "not overwriting pipeline.yaml, workflows/text-to-image.json" in capsys.readouterr().err


def test_init_into_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "taken").write_text("x")
    assert main(["init", str(tmp_path / "taken")]) == 2
    assert capsys.readouterr().err.endswith(
        f"Error: Invalid value for '[DIRECTORY]': Directory '{tmp_path}/taken' is a file.\n"
    )
    assert (tmp_path / "taken").read_text() == "x"


def test_a_write_that_fails_halfway_leaves_no_starter_file(tmp_path: Path) -> None:
    """Files over 4 KB cannot be written (RLIMIT_FSIZE): pipeline.yaml and the workflow are,
    the schema is not; init takes back what it wrote and says so."""
    import os
    import resource
    import sys

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    run = subprocess.run(
        [sys.executable, "-m", "rhflow", "init", "starter"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=limit,
    )
    assert run.returncode == 2
    assert run.stderr == (
        "Error: cannot write the starter files into starter: File too large; nothing was "
        "written (choose a folder you can write to: rhflow init DIR)\n"
    )
    assert [p for p in (tmp_path / "starter").rglob("*") if p.is_file()] == []

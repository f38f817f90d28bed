"""Edges found by reading the whole change again: each ends in a clear message or a safe
result, never a traceback, a half-written folder, or a check that passes unmade."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from rhflow.cli import main
from rhflow.record.manifest import read_manifest
from rhflow.view import grid, images

ROOT = Path(__file__).resolve().parent.parent
T2I = "1904136902449209346"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def bomb_png(path: Path, side: int = 20000) -> None:
    """A small PNG whose header claims ``side`` x ``side`` pixels (Pillow's bomb check)."""
    Image.new("RGB", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = bytes(data[12:29])  # b"IHDR" + 13 bytes
    patched = b"IHDR" + struct.pack(">II", side, side) + ihdr[12:]
    data[12:29] = patched
    data[29:33] = struct.pack(">I", zlib.crc32(patched))
    path.write_bytes(bytes(data))


def test_an_image_claiming_gigapixels_is_no_image_not_a_crash(tmp_path: Path) -> None:
    bomb_png(tmp_path / "bomb.png")
    assert images.open_image(tmp_path / "bomb.png") is None
    assert images.size_of(tmp_path / "bomb.png") is None


def test_a_manifest_with_values_of_the_wrong_type_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rhflow.errors import StateError

    example = json.loads((ROOT / "docs" / "explanation" / "manifest.md").read_text().split(
        "```json\n", 1)[1].split("\n```", 1)[0])  # fmt: skip
    example["tasks"][0]["attempts"] = "x"
    (tmp_path / "manifest.json").write_text(json.dumps(example))
    with pytest.raises(StateError, match="not a valid manifest"):
        read_manifest(tmp_path / "manifest.json")
    assert main(["grid", "manifest.json", "--x", "seed"]) != 0
    assert capsys.readouterr().err.startswith("Error: ")


def test_a_grid_too_large_to_hold_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", "tour"]) == 0
    assert main(["run", "tour/pipeline.yaml", "--emulator", "-q", "--out", "out"]) == 0
    monkeypatch.setattr(grid, "MAX_PIXELS", 10_000)  # a 100 x 100 sheet stands for gigapixels
    capsys.readouterr()
    assert main(["grid", "out/manifest.json", "--x", "seed", "--y", "subject"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: the grid would be ") and "--step" in err
    assert not (tmp_path / "out" / "grid.png").exists()


def test_init_writes_nothing_when_a_file_stands_where_a_folder_goes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "workflows").write_text("not a folder")
    assert main(["init", "new"]) == 2
    assert "workflows" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["workflows"]


def test_a_title_with_a_newline_cannot_add_keys_to_a_skeleton(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    graph = json.loads((ROOT / "pipelines" / "workflows" / "t2i.json").read_text())
    node = next(n for n in graph.values() if n["class_type"] == "KSampler")
    node.setdefault("_meta", {})["title"] = "Sampler\nsteps: injected"
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / f"{T2I}.json").write_text(json.dumps(graph))
    assert main(["inspect", f"workflows/{T2I}.json", "--skeleton"]) == 0
    text = capsys.readouterr().out
    assert "# Sampler steps: injected" in text
    (tmp_path / "p.yaml").write_text(text)
    assert main(["validate", "p.yaml"]) == 0


def test_validate_frozen_fails_when_the_lock_cannot_be_compared(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "p.yaml").write_text(
        f'version: 1\nsteps:\n  gen:\n    workflow: "{T2I}"\n    nodes: {{"3": {{seed: 1}}}}\n'
    )
    assert main(["validate", "p.yaml"]) == 0  # without --frozen: a "not checked" line
    capsys.readouterr()
    assert main(["validate", "--frozen", "p.yaml"]) == 1  # no key: nothing was compared
    assert "rhflow.lock not compared" in capsys.readouterr().out


def test_run_json_reports_a_bad_option_after_the_verbose_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(ROOT / "pipelines" / "sweep.yaml", tmp_path / "p.yaml")
    assert main(["-v", "run", "p.yaml", "--json", "--no-such-option"]) == 2
    event = json.loads(capsys.readouterr().out)
    assert event["event"] == "run_error" and "--no-such-option" in event["message"]


@pytest.mark.parametrize("value", ["nan", "inf", "0"])
def test_a_template_limit_must_be_a_positive_finite_number(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(ROOT / "pipelines" / "sweep.yaml", "p.yaml")
    assert main(["validate", "p.yaml", "--template-limit", f"seconds={value}"]) != 0
    assert "positive, finite number" in capsys.readouterr().err

"""``rhflow diff``: two real sweeps against the emulator, compared task by task."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from rhflow.cli import main
from rhflow.emulator import Emulator
from tests.sweep_runs import fail_next_tasks, run_sweep, write_sweep


def folders(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "a", tmp_path / "b"


def test_sweeps_differing_by_a_seed_add_remove_and_keep_tasks(
    emulator: Emulator, api_key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = folders(tmp_path)
    run_sweep(write_sweep(tmp_path, seeds=(1, 2), file="a.yaml"), a, emulator, api_key)
    run_sweep(write_sweep(tmp_path, seeds=(1, 3), file="b.yaml"), b, emulator, api_key)
    assert main(["diff", str(a / "manifest.json"), str(b / "manifest.json")]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[:6] == [
        "added     portrait [subject=cat, seed=3]",
        "added     portrait [subject=dog, seed=3]",
        "added     portrait [subject=fox, seed=3]",
        "removed   portrait [subject=cat, seed=2]",
        "removed   portrait [subject=dog, seed=2]",
        "removed   portrait [subject=fox, seed=2]",
    ]
    assert re.fullmatch(
        r"9 tasks: 0 changed, 3 added, 3 removed, 3 unchanged; coins 6 -> 6 \(\+0\); "
        r"task seconds \d+\.\d -> \d+\.\d \([+-]\d+\.\d\)",
        lines[6],
    ), lines[6]
    assert len(lines) == 7

    assert main(["diff", str(a), str(b), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["counts"] == {"changed": 0, "added": 3, "removed": 3, "unchanged": 3}
    unchanged = [t for t in data["tasks"] if t["kind"] == "unchanged"]
    assert {t["params"]["seed"] for t in unchanged} == {1}
    assert all(t["a"] == t["b"] for t in unchanged)  # the same task ids: nothing else changed
    assert data["changed"] is True


def test_the_same_sweep_twice_is_unchanged_and_exits_0(
    emulator: Emulator, api_key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = folders(tmp_path)
    sweep = write_sweep(tmp_path)
    run_sweep(sweep, a, emulator, api_key)
    run_sweep(sweep, b, emulator, api_key)
    assert main(["diff", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("6 tasks: 0 changed, 0 added, 0 removed, 6 unchanged; coins 6 -> 6 (+0)")


def test_changed_images_get_a_difference_figure_and_a_page_side_by_side(
    make_emulator: Callable[..., Emulator],
    api_key: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = folders(tmp_path)
    sweep = write_sweep(tmp_path, subjects=("cat",))
    run_sweep(sweep, a, make_emulator(seed=1), api_key)
    run_sweep(sweep, b, make_emulator(seed=2), api_key)  # other pixels for the same inputs
    page = tmp_path / "pages" / "diff.html"
    assert main(["diff", str(a), str(b), "--json", "-o", str(page)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["counts"] == {"changed": 2, "added": 0, "removed": 0, "unchanged": 0}
    for task in data["tasks"]:
        (pair,) = task["images"]
        first, second = (Image.open(pair[side]).convert("RGB") for side in ("a", "b"))
        expected = sum(ImageStat.Stat(ImageChops.difference(first, second)).mean) / (3 * 255)
        assert pair["difference"] == pytest.approx(expected, abs=1e-4)
        assert pair["difference"] > 0.01
        assert task["difference"] == pair["difference"]
        assert task["reasons"] == [f"output 0 differs by {pair['difference']:.1%} (perceptual)"]
        assert task["coins_delta"] == 0

    html = page.read_text(encoding="utf-8")
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert sources == [
        "../a/cat-1.png",
        "../b/cat-1.png",
        "../a/cat-2.png",
        "../b/cat-2.png",
    ]
    assert all((page.parent / s).is_file() for s in sources)
    assert "http" not in html


def test_a_task_that_failed_in_one_run_is_changed(
    make_emulator: Callable[..., Emulator],
    api_key: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = folders(tmp_path)
    sweep = write_sweep(tmp_path, subjects=("cat",))
    emu = make_emulator(seed=1)
    fail_next_tasks(emu)
    run_sweep(sweep, a, emu, api_key)
    run_sweep(sweep, b, emu, api_key)
    assert main(["diff", str(a), str(b)]) == 1
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith(
        "changed   portrait [subject=cat, seed=1]: status failed -> succeeded; 0 outputs -> 1"
    )


@pytest.mark.parametrize(
    "command",
    [
        ["diff", "{a}", "{b}"],
        ["grid", "{a}", "--x", "seed"],
        ["report", "{a}"],
        ["manifest", "merge", "{a}", "{b}", "-o", "{out}"],
    ],
    ids=["diff", "grid", "report", "merge"],
)
def test_an_unreadable_manifest_exits_2_for_every_command_that_reads_one(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2 (bad input) and never 1, which diff uses for 'something changed'."""
    (tmp_path / "a.json").write_text("{not json")
    (tmp_path / "b.json").write_text("{}")
    names = {k: str(tmp_path / f"{k}.json") for k in ("a", "b", "out")}
    assert main([word.format(**names) for word in command]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"Error: cannot read the manifest {tmp_path / 'a.json'}: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json"]

"""``rhflow grid``: a real sweep on the emulator, drawn as a contact sheet, checked by pixels."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from rhflow.cli import main
from rhflow.emulator import Emulator
from rhflow.record.manifest import read_manifest
from rhflow.view import images
from rhflow.view.grid import COLORS, TEXT, Sheet, arrange, draw
from tests.sweep_runs import failed_first_sweep, run_sweep, write_sweep


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / (3 * 255)


def label_as_drawn(text: str, box: tuple[int, int, int, int]) -> Image.Image:
    """What a label box holds when ``text`` is written at its usual place in it."""
    expected = images.canvas(box[2] - box[0], box[3] - box[1])
    images.write(expected, (0, 2), text, size=TEXT)
    return expected


@pytest.fixture(scope="module")
def failed_first(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, Sheet, Image.Image]]:
    """A 3 x 2 sweep whose first task (cat, seed 1) failed, gridded by the command line."""
    tmp_path = tmp_path_factory.mktemp("grid")
    with failed_first_sweep(tmp_path, seed=3) as out:
        png = tmp_path / "grid.png"
        path = out / "manifest.json"
        args = ["grid", str(path), "--x", "seed", "--y", "subject", "-o", str(png)]
        assert main(args) == 0
        laid_out = arrange(read_manifest(path), path.parent, "seed", "subject")
        sheet = draw(laid_out, tmp_path / "again.png")
        assert png.read_bytes() == (tmp_path / "again.png").read_bytes()
        with Image.open(png) as opened:
            yield out, sheet, opened.convert("RGB")


def test_each_image_is_in_the_cell_of_its_parameters(
    failed_first: tuple[Path, Sheet, Image.Image],
) -> None:
    out, sheet, image = failed_first
    assert image.size == sheet.size
    assert len(sheet.cells) == 6
    subjects, seeds = ["cat", "dog", "fox"], [1, 2]
    for (_, row, col), box in sheet.cells.items():
        if (row, col) == (0, 0):
            continue  # the failed task
        crop = image.crop(box)
        # the cell is as tall as the tallest image: 64x48 images scaled up to fill 128x96
        assert crop.size == sheet.cell_size == (128, 96)
        distances = {}
        for png in sorted(out.glob("*.png")):
            fitted = images.canvas(*crop.size)
            images.paste_fitted(fitted, Image.open(png).convert("RGB"), (0, 0, *crop.size))
            distances[png.stem] = mean_difference(crop, fitted)
        own = f"{subjects[row]}-{seeds[col]}"
        assert distances.pop(own) < 0.01, own
        assert min(distances.values()) > 0.05, own


def test_columns_and_rows_are_labelled_with_the_axis_values(
    failed_first: tuple[Path, Sheet, Image.Image],
) -> None:
    _, sheet, image = failed_first
    for (_, col), box in sheet.column_labels.items():
        assert image.crop(box).tobytes() == label_as_drawn(f"seed={col + 1}", box).tobytes()
        cell = sheet.cells[(0, 0, col)]
        assert box[3] <= cell[1] and box[0] <= cell[0] < box[2]  # right above its column
    for (_, row), box in sheet.row_labels.items():
        subject = ["cat", "dog", "fox"][row]
        drawn = images.canvas(box[2] - box[0], box[3] - box[1])
        images.write(drawn, (0, (box[3] - box[1] - TEXT) // 2), f"subject={subject}")
        assert image.crop(box).tobytes() == drawn.tobytes()
        assert box[2] <= sheet.cells[(0, row, 0)][0]  # left of its row
    assert len(sheet.column_labels) == 2 and len(sheet.row_labels) == 3


def test_a_failed_task_shows_as_failed_with_its_reason(
    failed_first: tuple[Path, Sheet, Image.Image],
) -> None:
    _, sheet, image = failed_first
    crop = image.crop(sheet.cells[(0, 0, 0)])
    colors = crop.getcolors(maxcolors=crop.width * crop.height)
    assert colors is not None
    background = max(colors)[1]
    assert background == COLORS["failed"]
    assert any(sum(color) < 200 for _, color in colors), "no text in the failed cell"


def test_a_cell_without_a_task_and_a_missing_file_say_so(
    emulator: Emulator, api_key: str, tmp_path: Path
) -> None:
    sweep = write_sweep(tmp_path, exclude="[{subject: dog, seed: 2}]")
    run_sweep(sweep, tmp_path / "out", emulator, api_key)
    (tmp_path / "out" / "fox-1.png").unlink()
    manifest = read_manifest(tmp_path / "out" / "manifest.json")
    grid = arrange(manifest, tmp_path / "out", "seed", "subject")
    cells = grid.sections[0].cells
    assert (cells[(1, 1)].state, cells[(2, 0)].state, cells[(0, 0)].state) == (
        "missing",
        "no file",
        "image",
    )
    sheet = draw(grid, tmp_path / "grid.png")
    with Image.open(tmp_path / "grid.png") as png:
        rgb = png.convert("RGB")
        assert rgb.getpixel(sheet.cells[(0, 1, 1)][:2]) == COLORS["missing"]
        assert rgb.getpixel(sheet.cells[(0, 2, 0)][:2]) == COLORS["no file"]


def test_a_parameter_on_no_axis_splits_the_grid_into_titled_sections(
    emulator: Emulator, api_key: str, tmp_path: Path
) -> None:
    run_sweep(write_sweep(tmp_path, subjects=("cat", "dog")), tmp_path / "out", emulator, api_key)
    manifest = read_manifest(tmp_path / "out" / "manifest.json")
    grid = arrange(manifest, tmp_path / "out", "seed")
    assert [s.title for s in grid.sections] == ["subject=cat", "subject=dog"]
    sheet = draw(grid, tmp_path / "grid.png")
    assert sorted(sheet.cells) == [(0, 0, 0), (0, 0, 1), (1, 0, 0), (1, 0, 1)]
    assert not sheet.row_labels
    with Image.open(tmp_path / "grid.png") as png:
        assert png.size == sheet.size
        box = sheet.section_titles[1]
        assert png.convert("RGB").crop(box).getextrema() != ((255, 255),) * 3


def test_wrong_axes_are_refused_with_what_exists(
    emulator: Emulator,
    api_key: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_sweep(write_sweep(tmp_path), tmp_path / "out", emulator, api_key)
    out = str(tmp_path / "out")
    assert main(["grid", out, "--x", "sed"]) == 2
    assert capsys.readouterr().err == (
        "Error: no task has a parameter 'sed'; parameters are: seed, subject\n"
    )
    assert main(["grid", out, "--x", "seed", "--y", "seed"]) == 2
    assert "give two different parameters" in capsys.readouterr().err
    assert main(["grid", out, "--x", "seed", "--step", "upscale"]) == 2
    assert capsys.readouterr().err == (
        "Error: the manifest has no task of step 'upscale'; steps are: portrait\n"
    )
    assert not (tmp_path / "out" / "grid.png").exists()


def test_a_task_without_an_image_output_says_so(
    emulator: Emulator, api_key: str, tmp_path: Path
) -> None:
    sweep = tmp_path / "video.yaml"
    sweep.write_text("""
version: 1
steps:
  clip:
    workflow: "1904136902449209349"
    matrix: {seed: [1, 2]}
    nodes: {"3": {seed: "{{ seed }}"}}
""")
    run_sweep(sweep, tmp_path / "out", emulator, api_key)
    manifest = read_manifest(tmp_path / "out" / "manifest.json")
    assert all(t.outputs and t.status == "succeeded" for t in manifest.tasks)
    grid = arrange(manifest, tmp_path / "out", "seed")
    assert [c.state for c in grid.sections[0].cells.values()] == ["not an image"] * 2
    sheet = draw(grid, tmp_path / "grid.png")
    with Image.open(tmp_path / "grid.png") as png:
        assert png.convert("RGB").getpixel(sheet.cells[(0, 0, 1)][:2]) == COLORS["not an image"]

"""``rhflow report``: the page of a real sweep, loaded in a real headless Chromium.

The browser is Debian's ``chromium`` driven by Playwright for Python (``pip install
playwright``; its own browser download is not needed: the system binary is used). Where
neither can be had the browser tests skip, saying which is missing; ``.ci/run`` installs
chromium.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rhflow.cli import main
from tests.sweep_runs import failed_first_sweep

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def browser_path() -> str | None:
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A 3 x 2 sweep whose first task (cat, seed 1) failed."""
    with failed_first_sweep(tmp_path_factory.mktemp("report"), seed=5) as out:
        yield out


@pytest.fixture(scope="module")
def browser(run_folder: Path) -> Iterator[Any]:
    """Chromium, started after the sweep ran: Playwright's sync API holds an event loop on this
    thread while it is open, and ``rhflow run`` needs its own."""
    executable = browser_path()
    if executable is None:
        pytest.skip("no Chromium on PATH: apt-get install chromium (as .ci/run does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("Playwright for Python is not installed: pip install '.[test]'")
    with sync_playwright() as play:
        launched = play.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


def load(browser: Any, page_path: Path) -> tuple[Any, list[str], list[str]]:
    """Open ``page_path``; return the page, console/page errors, and every URL requested."""
    page = browser.new_page()
    errors: list[str] = []
    requested: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda r: requested.append(r.url))
    page.goto(page_path.as_uri(), wait_until="load")
    return page, errors, requested


IMAGES = "Array.from(document.images).map(i => [i.getAttribute('src'), i.naturalWidth])"
VISIBLE_ROWS = "document.querySelectorAll('#task-table tbody tr:not(.hidden)').length"
VISIBLE_IMAGES = "Array.from(document.images).filter(i => !i.closest('.hidden')).map(i => i.alt)"


@pytest.mark.slow
def test_the_page_loads_without_errors_and_shows_every_image(
    browser: Any, run_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(run_folder / "manifest.json")]) == 0
    report = run_folder / "report.html"
    assert capsys.readouterr().out == f"{report}: 6 tasks of 'sweep'\n"
    page, errors, requested = load(browser, report)
    shown = page.evaluate(IMAGES)
    assert errors == []
    assert len(shown) == 5, shown  # six tasks, one failed
    assert all(width > 0 for _, width in shown), shown
    assert {src for src, _ in shown} == {
        f"{s}-{n}.png" for s in ("cat", "dog", "fox") for n in (1, 2)
    } - {"cat-1.png"}
    assert all(url.startswith("file://") for url in requested), requested
    failures = page.inner_text("#failures")
    assert "portrait [subject=cat, seed=1]" in failures
    assert "out of memory" in failures
    summary = page.inner_text("#summary")
    assert re.search(r"tasks\s+6 \(5 succeeded, 1 failed\)", summary), summary
    assert re.search(r"coins\s+5", summary), summary
    page.close()


@pytest.mark.slow
def test_choosing_a_parameter_value_hides_the_other_tasks(
    browser: Any, run_folder: Path, tmp_path: Path
) -> None:
    page_path = tmp_path / "pages" / "sweep.html"  # elsewhere: image paths lead back
    assert main(["report", str(run_folder), "-o", str(page_path)]) == 0
    page, errors, _ = load(browser, page_path)
    assert all(width > 0 for _, width in page.evaluate(IMAGES))
    assert page.inner_text("#shown") == "6 of 6 tasks shown"
    page.select_option('select[data-param="subject"]', label="dog")
    assert page.inner_text("#shown") == "2 of 6 tasks shown"
    assert page.evaluate(VISIBLE_ROWS) == 2
    assert sorted(page.evaluate(VISIBLE_IMAGES)) == ["subject=dog, seed=1", "subject=dog, seed=2"]
    page.select_option('select[data-param="seed"]', label="1")
    assert page.inner_text("#shown") == "1 of 6 tasks shown"
    page.select_option('select[data-param="subject"]', label="all")
    assert page.inner_text("#shown") == "3 of 6 tasks shown"
    assert page.evaluate(VISIBLE_IMAGES) == ["subject=dog, seed=1", "subject=fox, seed=1"]
    assert errors == []
    page.close()


def test_the_page_fetches_nothing_from_the_network(run_folder: Path) -> None:
    assert main(["report", str(run_folder)]) == 0
    html = (run_folder / "report.html").read_text(encoding="utf-8")
    linked = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert linked and not [u for u in linked if re.match(r"[a-z]+:", u)], linked
    assert "<script src" not in html and "<link" not in html
    for src in re.findall(r'<img src="([^"]*)"', html):
        assert (run_folder / src).is_file(), src


def test_a_missing_manifest_is_an_error_not_a_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert capsys.readouterr().err == (
        f"Error: no manifest at {tmp_path / 'empty' / 'manifest.json'}; run the pipeline first\n"
    )
    assert not (tmp_path / "empty" / "report.html").exists()

"""Costs: ``rhflow plan`` estimates from earlier manifests, ``rhflow run --max-coins`` refuses
a run estimated over the cap and stops submitting once the run has spent it, the manifest
records the spend, and a run warns when the balance is below the estimate."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
import requests

from rhflow.cli import main
from rhflow.emulator import Emulator

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "schemas" / "manifest.schema.json").read_text())
PIPELINE = """\
version: 1
name: budget
output: out
concurrency: 1
steps:
  gen:
    workflow: "1904136902449209346"
    workflow_file: t2i.json
    retries: 0
    matrix:
      subject: [cat, dog]
      seed: [1, 2]
    nodes:
      "6": {text: "a {{ subject }}"}
      "3": {seed: "{{ seed }}"}
      "5": {width: 64, height: 64}
    outputs: "{{ subject }}-{{ seed }}.{{ ext }}"
"""


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").write_text(PIPELINE)
    (tmp_path / "t2i.json").write_text((ROOT / "pipelines" / "workflows" / "t2i.json").read_text())


def creates(emu: Emulator) -> int:
    stats = requests.get(emu.url + "/emulator/stats", timeout=10).json()
    return int(stats["requests"].get("/task/openapi/create", 0))


def run(emu: Emulator, key: str, *args: str) -> int:
    return main(["run", "p.yaml", "--base-url", emu.url, "--api-key", key, *args])


def manifest() -> dict:
    data = json.loads(Path("out/manifest.json").read_text())
    jsonschema.validate(data, SCHEMA)
    return data


def test_plan_shows_no_estimate_without_earlier_manifests(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["plan", "p.yaml"]) == 0
    out = capsys.readouterr().out
    assert "Estimate" not in out and out.endswith("4 tasks in pipeline 'budget': gen 4\n")
    assert main(["plan", "p.yaml", "--json"]) == 0
    assert "estimate" not in json.loads(capsys.readouterr().out)


def test_plan_estimates_the_tasks_still_to_run_from_earlier_manifests(
    make_emulator: Callable[..., Emulator], api_key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = make_emulator(account="consumer", concurrency=50)  # a key that pays coins
    assert run(emu, api_key, "--only", "subject=cat", "--quiet") == 0
    capsys.readouterr()
    assert main(["plan", "p.yaml"]) == 0
    out = capsys.readouterr().out
    block = out[out.index("Estimate:") :].splitlines()
    assert block[1].split() == ["STEP", "TO", "RUN", "DONE", "COINS", "TIME"]
    assert re.fullmatch(r"gen +2 +2 +2 coins +\d+ s", block[2]), block[2]
    assert re.fullmatch(r"total +2 +2 +2 coins +\d+ s", block[3]), block[3]
    assert block[4] == (
        "(mean coins and time of 2 earlier succeeded tasks per step, from out/manifest.json; "
        "time with 1 at a time)"
    )
    assert main(["plan", "p.yaml", "--json"]) == 0
    estimate = json.loads(capsys.readouterr().out)["estimate"]
    assert estimate["coins"] == 2.0
    [step] = estimate["steps"]
    assert (step["to_run"], step["done"], step["samples"], step["coins_each"]) == (2, 2, 2, 1.0)
    assert 0 < step["seconds_each"] < 30


def test_max_coins_refuses_a_run_estimated_over_it_and_sends_nothing(
    make_emulator: Callable[..., Emulator], api_key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = make_emulator(account="consumer", concurrency=50)  # a key that pays coins
    assert run(emu, api_key, "--only", "subject=cat", "--quiet") == 0
    capsys.readouterr()
    before = creates(emu)
    assert run(emu, api_key, "--max-coins", "1.5") == 2
    assert capsys.readouterr().err == (
        "Error: this run is estimated at 2 coins, over --max-coins 1.5 (mean coins and time "
        "of 2 earlier succeeded tasks per step, from out/manifest.json); nothing was "
        "submitted. Raise --max-coins, or run fewer tasks with --limit or --only\n"
    )
    assert creates(emu) == before
    assert run(emu, api_key, "--max-coins", "2", "--quiet") == 0  # within the cap: it runs
    assert manifest()["budget"] == {
        "max_coins": 2.0,
        "estimate": 2.0,
        "estimate_basis": "mean coins and time of 2 earlier succeeded tasks per step, "
        "from out/manifest.json",
        "spent": 2.0,
        "stopped": False,
        "max_money": None,
        "estimate_money": None,
        "spent_money": {},
    }


def test_max_coins_stops_submitting_once_spent_and_a_rerun_finishes(
    make_emulator: Callable[..., Emulator], api_key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = make_emulator(account="consumer", concurrency=50)  # a key that pays coins
    assert run(emu, api_key, "--max-coins", "2", "--quiet") == 1
    out = capsys.readouterr().out
    assert out.splitlines()[1] == (
        "  error: --max-coins 2 reached (2 coins spent by this run): 2 tasks not submitted; "
        "run again with a higher --max-coins to finish them"
    )
    assert creates(emu) == 2
    data = manifest()
    assert data["counts"]["succeeded"] == 2 and data["counts"]["pending"] == 2
    assert data["budget"]["spent"] == 2.0 and data["budget"]["stopped"] is True
    assert data["budget"]["estimate"] is None  # nothing to estimate from before the first run
    assert run(emu, api_key, "--max-coins", "5", "--quiet") == 0
    assert creates(emu) == 4  # only the two tasks left
    assert manifest()["budget"]["spent"] == 2.0


def test_tasks_in_flight_finish_when_the_cap_is_reached(
    make_emulator: Callable[..., Emulator], api_key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = make_emulator(account="consumer", concurrency=50)  # a key that pays coins
    assert run(emu, api_key, "--max-coins", "1", "--concurrency", "2", "--quiet") == 1
    data = manifest()
    assert creates(emu) == 2  # two were in flight when the first coin was spent
    assert data["counts"]["succeeded"] == 2 and data["counts"]["pending"] == 2
    assert data["budget"]["spent"] == 2.0


def test_a_run_warns_when_the_balance_is_below_the_estimate(
    make_emulator: Callable[..., Emulator], capsys: pytest.CaptureFixture[str]
) -> None:
    emu = make_emulator(coins=3, account="consumer", concurrency=50)
    key = "a-key-with-three-coins-0123456789"
    assert run(emu, key, "--only", "subject=cat", "--quiet") == 0
    capsys.readouterr()
    run(emu, key)  # 2 tasks estimated at 2 coins; 1 coin left
    err = capsys.readouterr().err
    assert (
        "warning: the key's balance (1 coins) is lower than this run's estimate (2 coins); "
        "RunningHub refuses new tasks (416) when it runs out\n"
    ) in err


def test_no_warning_when_the_balance_covers_the_estimate(
    make_emulator: Callable[..., Emulator], api_key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = make_emulator(account="consumer", concurrency=50)  # a key that pays coins
    assert run(emu, api_key, "--only", "subject=cat", "--quiet") == 0
    assert run(emu, api_key) == 0
    assert "balance" not in capsys.readouterr().err


def test_max_coins_must_be_positive(
    make_emulator: Callable[..., Emulator], api_key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = make_emulator(account="consumer", concurrency=50)  # a key that pays coins
    assert run(emu, api_key, "--max-coins", "0") == 2
    assert capsys.readouterr().err == "Error: --max-coins must be more than 0, got 0\n"
    assert creates(emu) == 0


def test_an_estimate_without_figures_for_a_step_has_no_total(tmp_path: Path) -> None:
    from rhflow.execute.estimate import Estimate, StepEstimate

    known = StepEstimate("draft", to_run=3, done=0, samples=2, coins_each=2.0, seconds_each=10)
    unknown = StepEstimate("refine", to_run=2, done=0)
    cost = Estimate((known, unknown), concurrency=2, sources=(tmp_path / "manifest.json",))
    assert cost.coins is None and cost.seconds is None
    assert known.coins == 6.0 and known.seconds == 30.0
    assert cost.basis.endswith("; no earlier figures for step refine")
    assert cost.lines()[3].split() == ["refine", "2", "0", "?", "?"]
    assert cost.lines()[4].split() == ["total", "5", "0", "?", "?"]


def test_files_fetched_again_cost_this_run_nothing(
    make_emulator: Callable[..., Emulator], api_key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Tasks an earlier run paid for, whose files are downloaded again, do not count toward
    --max-coins: only the tasks this run creates (or follows to their end) do."""
    emu = make_emulator(account="consumer", concurrency=50)  # a key that pays coins
    assert run(emu, api_key, "--only", "subject=cat", "--quiet") == 0
    for image in Path("out").glob("cat-*.png"):
        image.unlink()
    capsys.readouterr()
    assert run(emu, api_key, "--max-coins", "2", "--quiet") == 0
    assert creates(emu) == 4  # the two dog tasks; the cats were only fetched again
    data = manifest()
    assert data["counts"]["succeeded"] == 4
    assert data["budget"]["spent"] == 2.0 and data["budget"]["stopped"] is False

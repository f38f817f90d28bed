"""Money: an enterprise key pays money (``consumeMoney``) in the currency accountStatus gives,
not coins. Each task records what it cost in the state store and the manifest, summaries show
it beside the coins, ``rhflow plan`` estimates it, ``--max-money`` caps it as ``--max-coins``
caps coins, and state files and manifests written before money was counted still work."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
import requests

from rhflow.api.results import Output, task_charges
from rhflow.cli import main
from rhflow.emulator import Emulator
from rhflow.record.costs import amount_text, money_text, spend_text
from rhflow.record.store import SCHEMA_VERSION, Store
from tests.test_budget import _in_tmp  # noqa: F401 - the pipeline p.yaml in a folder of its own

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "schemas" / "manifest.schema.json").read_text())
KEY = "an-enterprise-key-of-this-test-0123"


@pytest.fixture
def enterprise(make_emulator: Callable[..., Emulator]) -> Emulator:
    """A key that pays money in USD: 0.01 for each task (0.2 s at 0.002 a second, 0.01 least)."""
    return make_emulator(account="enterprise", currency="USD", concurrency=50)


def creates(emu: Emulator) -> int:
    stats = requests.get(emu.url + "/emulator/stats", timeout=10).json()
    return int(stats["requests"].get("/task/openapi/create", 0))


def run(emu: Emulator, *args: str, key: str = KEY) -> int:
    return main(["run", "p.yaml", "--base-url", emu.url, "--api-key", key, *args])


def manifest(path: str = "out/manifest.json") -> dict:
    data = json.loads(Path(path).read_text())
    jsonschema.validate(data, SCHEMA)
    return data


def test_an_enterprise_run_records_money_per_task_and_says_it_in_the_summary(
    enterprise: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(enterprise, "--only", "subject=cat") == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert re.fullmatch(
        r"budget: succeeded: 2 succeeded, 0 failed \(2 tasks\) in [\d.]+ s; "
        r"0 coins / 0\.02 USD this run, 0 coins / 0\.02 USD in total",
        first,
    ), first
    data = manifest()
    done = [t for t in data["tasks"] if t["status"] == "succeeded"]
    assert [(t["coins"], t["money"], t["currency"]) for t in done] == [(0.0, 0.01, "USD")] * 2
    assert data["cost"]["money"] == {"USD": 0.02} and data["cost"]["coins"] == 0
    assert data["budget"]["spent_money"] == {"USD": 0.02}
    with Store(Path("out/.rhflow/state.db")) as store:
        kept = [r for r in store.tasks().values() if r.status == "succeeded"]
    assert [(r.money, r.currency) for r in kept] == [(0.01, "USD")] * 2
    # the rest of the sweep: this run's money apart from the folder's total; --json says it too
    assert run(enterprise, "--json") == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    finished = next(e for e in events if e["event"] == "run_finished")
    assert (finished["coins_this_run"], finished["coins_total"]) == (0, 0)
    assert finished["money_this_run"] == {"USD": 0.02}
    assert finished["money_total"] == {"USD": 0.04}


def test_a_run_that_charged_no_money_says_zero_money_beside_the_folder_total(
    enterprise: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(enterprise, "--quiet") == 0
    capsys.readouterr()
    assert run(enterprise) == 0  # every task done: nothing created, nothing paid
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith("; 0 coins / 0.00 USD this run, 0 coins / 0.04 USD in total"), first


def test_a_consumer_run_summary_shows_coins_only(
    make_emulator: Callable[..., Emulator], capsys: pytest.CaptureFixture[str]
) -> None:
    emu = make_emulator(account="consumer", concurrency=50)
    assert run(emu, "--only", "subject=cat") == 0
    assert capsys.readouterr().out.splitlines()[0].endswith("; 2 coins this run, 2 coins in total")
    data = manifest()
    assert "money" not in data["cost"]
    assert {(t["money"], t["currency"]) for t in data["tasks"]} == {(None, None)}


def test_plan_estimates_money_from_earlier_enterprise_runs(
    enterprise: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(enterprise, "--only", "subject=cat", "--quiet") == 0
    capsys.readouterr()
    assert main(["plan", "p.yaml"]) == 0
    out = capsys.readouterr().out
    block = out[out.index("Estimate:") :].splitlines()
    assert block[1].split() == ["STEP", "TO", "RUN", "DONE", "COINS", "MONEY", "TIME"]
    assert re.fullmatch(r"gen +2 +2 +0 coins +0\.02 USD +\d+ s", block[2]), block[2]
    assert re.fullmatch(r"total +2 +2 +0 coins +0\.02 USD +\d+ s", block[3]), block[3]
    assert block[4] == (
        "(mean coins, money and time of 2 earlier succeeded tasks per step, from "
        "out/manifest.json; time with 1 at a time)"
    )
    assert main(["plan", "p.yaml", "--json"]) == 0
    estimate = json.loads(capsys.readouterr().out)["estimate"]
    assert (estimate["money"], estimate["currency"], estimate["coins"]) == (0.02, "USD", 0.0)
    assert estimate["steps"][0]["money_each"] == 0.01


def test_max_money_refuses_a_run_estimated_over_it_and_sends_nothing(
    enterprise: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(enterprise, "--only", "subject=cat", "--quiet") == 0
    capsys.readouterr()
    before = creates(enterprise)
    assert run(enterprise, "--max-money", "0.015") == 2
    assert capsys.readouterr().err == (
        "Error: this run is estimated at 0.02 USD, over --max-money 0.015 (mean coins, money "
        "and time of 2 earlier succeeded tasks per step, from out/manifest.json); nothing was "
        "submitted. Raise --max-money, or run fewer tasks with --limit or --only\n"
    )
    assert creates(enterprise) == before
    assert run(enterprise, "--max-money", "0.02", "--quiet") == 0  # within the cap: it runs
    budget = manifest()["budget"]
    assert (budget["max_money"], budget["estimate_money"]) == (0.02, {"USD": 0.02})
    assert (budget["spent_money"], budget["stopped"]) == ({"USD": 0.02}, False)


def test_max_money_stops_submitting_once_spent_and_a_rerun_finishes(
    enterprise: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(enterprise, "--max-money", "0.02", "--quiet") == 1
    assert capsys.readouterr().out.splitlines()[1] == (
        "  error: --max-money 0.02 reached (0 coins / 0.02 USD spent by this run): 2 tasks "
        "not submitted; run again with a higher --max-money to finish them"
    )
    assert creates(enterprise) == 2
    data = manifest()
    assert data["counts"]["succeeded"] == 2 and data["counts"]["pending"] == 2
    assert data["budget"]["spent_money"] == {"USD": 0.02} and data["budget"]["stopped"] is True
    assert run(enterprise, "--max-money", "1", "--quiet") == 0
    assert creates(enterprise) == 4  # only the two tasks left


def test_tasks_in_flight_finish_when_the_money_cap_is_reached(
    enterprise: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(enterprise, "--max-money", "0.01", "--concurrency", "2", "--quiet") == 1
    assert creates(enterprise) == 2  # two were in flight when the first 0.01 was spent
    data = manifest()
    assert data["counts"]["succeeded"] == 2 and data["budget"]["spent_money"] == {"USD": 0.02}


def test_max_money_must_be_positive(
    enterprise: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(enterprise, "--max-money", "0") == 2
    assert capsys.readouterr().err == "Error: --max-money must be more than 0, got 0\n"
    assert run(enterprise, "--max-money", "nan") == 2
    assert capsys.readouterr().err == "Error: --max-money must be more than 0, got nan\n"
    assert creates(enterprise) == 0


def test_a_run_warns_when_the_money_left_is_below_the_estimate(
    make_emulator: Callable[..., Emulator], capsys: pytest.CaptureFixture[str]
) -> None:
    emu = make_emulator(account="enterprise", money=0.03, concurrency=50)
    assert run(emu, "--only", "subject=cat", "--quiet") == 0
    capsys.readouterr()
    run(emu)  # 2 tasks estimated at 0.02 CNY; 0.01 CNY left
    assert (
        "warning: the key's balance (0.01 CNY) is lower than this run's estimate (0.02 CNY); "
        "RunningHub refuses new tasks (416) when it runs out\n"
    ) in capsys.readouterr().err


def test_account_shows_an_enterprise_keys_money_and_currency(
    enterprise: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(enterprise, "--only", "subject=cat", "--quiet") == 0
    capsys.readouterr()
    args = ["account", "--base-url", enterprise.url, "--api-key", KEY]
    assert main(args) == 0
    assert capsys.readouterr().out == (
        f"server:        {enterprise.url}\n"
        "coins:         100000\n"
        "money:         999.98 USD\n"
        "running tasks: 0\n"
        "key type:      EXCLUSIVE\n"
    )
    assert main([*args, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["remain_money"], info["currency"]) == (999.98, "USD")


#: The tasks table of a state store before money was counted (schema version 1).
V1_TASKS = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
CREATE TABLE tasks (
    id TEXT PRIMARY KEY, step TEXT NOT NULL, status TEXT NOT NULL, remote_id TEXT, server TEXT,
    emulated INTEGER NOT NULL DEFAULT 0, key TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    params TEXT NOT NULL DEFAULT '{}', node_info_list TEXT, submitted_at REAL, started_at REAL,
    finished_at REAL, cost_time REAL, coins REAL, failure TEXT, notes TEXT NOT NULL DEFAULT '[]',
    updated_at REAL NOT NULL, sending REAL, unanswered INTEGER NOT NULL DEFAULT 0
);
INSERT INTO tasks (id, step, status, coins, updated_at) VALUES ('t1', 'gen', 'succeeded', 3, 0);
"""


def test_a_state_store_of_schema_1_is_migrated_when_opened(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(V1_TASKS)
    with Store(db) as store:
        record = store.get("t1")
        assert record is not None and (record.coins, record.money, record.currency) == (
            3.0,
            None,
            None,
        )
        store.update("t1", money=0.5, currency="CNY")
    with sqlite3.connect(db) as conn:
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        columns = {row[1] for row in conn.execute("PRAGMA table_info(tasks)")}
    assert version == (str(SCHEMA_VERSION),) and SCHEMA_VERSION == 2
    assert {"money", "currency"} <= columns
    with Store(db) as store:
        again = store.get("t1")
        assert again is not None and (again.money, again.currency) == (0.5, "CNY")


def test_a_folder_whose_state_predates_money_resumes_without_creating_again(
    enterprise: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(enterprise, "--only", "subject=cat", "--quiet") == 0
    with sqlite3.connect("out/.rhflow/state.db") as conn:  # back to how rhflow 1 wrote it
        conn.execute("ALTER TABLE tasks DROP COLUMN money")
        conn.execute("ALTER TABLE tasks DROP COLUMN currency")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    assert run(enterprise, "--quiet") == 0
    assert creates(enterprise) == 4  # the two cats were not created again
    data = manifest()
    assert data["counts"]["succeeded"] == 4
    # what the old state did not record stays unknown; the tasks paid since have it
    assert data["cost"]["money"] == {"USD": 0.02}
    assert sorted(str(t["money"]) for t in data["tasks"]) == ["0.01", "0.01", "None", "None"]


def test_a_manifest_without_money_still_validates_and_merges_with_one_that_has_it(
    enterprise: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(enterprise, "--shard", "1/2", "--out", "one", "--quiet") == 0
    assert run(enterprise, "--shard", "2/2", "--out", "two", "--quiet") == 0
    old = manifest("one/manifest.json")  # as an rhflow before money wrote it
    old["cost"].pop("money")
    for name in ("max_money", "estimate_money", "spent_money"):
        old["budget"].pop(name)
    for task in old["tasks"]:
        task.pop("money")
        task.pop("currency")
    jsonschema.validate(old, SCHEMA)
    Path("one/manifest.json").write_text(json.dumps(old))
    merged_path = "merged.json"
    args = ["manifest", "merge", "one/manifest.json", "two/manifest.json", "-o", merged_path]
    assert main(args) == 0, capsys.readouterr()
    merged = manifest(merged_path)
    assert merged["counts"]["succeeded"] == 4
    assert merged["cost"]["money"] == {"USD": 0.02}  # only the tasks that say what they paid
    paid = [t for t in merged["tasks"] if t["money"] is not None]
    assert len(paid) == 2 and {t["currency"] for t in paid} == {"USD"}


def _item(coins: str | None, money: str | None, third: str | None = None) -> Output:
    return Output.from_item(
        {"fileUrl": "https://x/a.png", "fileType": "png", "consumeCoins": coins,
         "consumeMoney": money, "thirdPartyConsumeMoney": third}
    )  # fmt: skip


def test_a_tasks_charges_are_its_own_figures_not_a_sum_over_its_files() -> None:
    # v1 repeats the task's figures on each output item; v2 has one usage for all results
    assert task_charges([_item("17", None), _item("17", None)]) == (17.0, None)
    assert task_charges([_item("0", "0.25", "0.10"), _item("0", "0.25", "0.10")]) == (0.0, 0.35)
    assert task_charges([_item(None, "nan"), _item(None, "-1")]) == (0.0, None)
    assert task_charges([]) == (0.0, None)


def test_money_texts() -> None:
    assert amount_text(0.06) == "0.06" and amount_text(3) == "3.00"
    assert amount_text(0.0025) == "0.0025"
    assert money_text({"CNY": 0.06}) == "0.06 CNY"
    assert money_text({"": 1.5}) == "1.50 money"
    assert money_text({"USD": 1, "CNY": 2}) == "2.00 CNY + 1.00 USD"
    assert spend_text(3, {}) == "3 coins" and spend_text(1, None) == "1 coin"
    assert spend_text(0, {"CNY": 0.06}) == "0 coins / 0.06 CNY"


def test_diff_shows_the_money_of_two_enterprise_runs(
    enterprise: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(enterprise, "--only", "subject=cat", "--out", "one", "--quiet") == 0
    assert run(enterprise, "--out", "two", "--quiet") == 0
    capsys.readouterr()
    assert main(["diff", "one/manifest.json", "two/manifest.json"]) == 1
    last = capsys.readouterr().out.splitlines()[-1]
    assert re.fullmatch(
        r"4 tasks: 0 changed, 2 added, 0 removed, 2 unchanged; coins 0 -> 0 \(\+0\); "
        r"money 0\.02 -> 0\.04 \(\+0\.02 USD\); task seconds [\d.]+ -> [\d.]+ \([+-][\d.]+\)",
        last,
    ), last
    assert main(["diff", "one/manifest.json", "two/manifest.json", "--json"]) == 1
    totals = json.loads(capsys.readouterr().out)["totals"]
    assert totals["money"] == {"a": 0.02, "b": 0.04, "delta": 0.02}


def test_a_cache_entry_keeps_what_its_task_paid_and_the_note_says_it(
    enterprise: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(enterprise, "--only", "subject=cat", "--out", "a", "--cache", "cache") == 0
    assert run(enterprise, "--only", "subject=cat", "--out", "b", "--cache", "cache") == 0
    assert creates(enterprise) == 2  # the second machine took both from the cache
    entries = [json.loads(p.read_text()) for p in Path("cache").rglob("entry.json")]
    assert [(e["money"], e["currency"]) for e in entries] == [(0.01, "USD")] * 2
    notes = [n for t in manifest("b/manifest.json")["tasks"] for n in t["notes"]]
    assert len(notes) == 2 and all("0 coins / 0.01 USD there); nothing was submitted" in n
                                   for n in notes)  # fmt: skip

"""``rhflow account``: balance, running tasks and key type from accountStatus, over HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
import requests

from rhflow.cli import main
from rhflow.emulator import Emulator


def test_account_shows_coins_running_tasks_and_key_type(
    make_emulator: Callable[..., Emulator], api_key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = make_emulator(coins=250, task_seconds=(30.0, 30.0), account="consumer", queue_seconds=0)
    created = requests.post(
        emu.url + "/task/openapi/create",
        json={"apiKey": api_key, "workflowId": "1904136902449209346"},
        timeout=10,
    ).json()
    assert created["code"] == 0
    assert main(["account", "--base-url", emu.url, "--api-key", api_key]) == 0
    out = capsys.readouterr().out
    assert out == (
        f"server:        {emu.url}\n"
        "coins:         250\n"  # charged when the task ends
        "running tasks: 1\n"
        "key type:      NORMAL\n"
    )
    assert api_key not in out


def test_account_json(
    emulator: Emulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RH_API_KEY", "account-json-key-0123456789abcdef")
    assert main(["account", "--json", "--base-url", emulator.url]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == {
        "server": emulator.url,
        "remain_coins": 100000.0,
        "current_task_counts": 0,
        "remain_money": None,
        "currency": None,
        "api_type": "NORMAL",
    }


def test_money_and_currency_are_shown_where_given() -> None:
    from rhflow.api.results import Account
    from rhflow.commands.account import account_text

    info = Account.from_data(
        {
            "remainCoins": "177814",
            "currentTaskCounts": "2",
            "remainMoney": "12.3",
            "currency": "CNY",
            "apiType": "NORMAL",
        }
    )
    assert account_text(info, "https://www.runninghub.cn") == (
        "server:        https://www.runninghub.cn\n"
        "coins:         177814\n"
        "money:         12.30 CNY\n"
        "running tasks: 2\n"
        "key type:      NORMAL"
    )


def test_account_without_a_key_says_how_to_give_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["account"]) == 2
    assert capsys.readouterr().err == (
        "Error: no RunningHub API key: set RH_API_KEY or pass --api-key "
        "(or use --emulator to try without a key)\n"
    )


def test_a_refused_key_is_an_error_without_the_key(
    make_emulator: Callable[..., Emulator], capsys: pytest.CaptureFixture[str]
) -> None:
    emu = make_emulator(api_keys=("the-only-good-key-0123456789abcdef",))
    bad = "a-refused-key-0123456789abcdef0123"
    assert main(["account", "--base-url", emu.url, "--api-key", bad]) != 0
    captured = capsys.readouterr()
    assert captured.err.startswith("Error: ")
    assert bad not in captured.err + captured.out

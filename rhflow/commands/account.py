"""``rhflow account``: the key's balance, the tasks running now and the key type."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from rhflow.api.client import Account, Client


def account(*, api_key: str | None, base_url: str | None, as_json: bool) -> int:
    """Ask ``accountStatus`` once and print what it says."""
    with Client.from_env(api_key=api_key, base_url=base_url) as client:
        info = client.account()
        server = client.base_url
    if as_json:
        click.echo(json.dumps({"server": server, **asdict(info)}))
    else:
        click.echo(account_text(info, server))
    return 0


def account_text(info: Account, server: str) -> str:
    """The account as a few aligned lines; what the server left out is not shown."""
    rows = [("server", server), ("coins", _amount(info.remain_coins))]
    if info.remain_money is not None:
        money = _amount(info.remain_money)
        rows.append(("money", f"{money} {info.currency}" if info.currency else money))
    rows.append(("running tasks", str(info.current_task_counts)))
    rows.append(("key type", info.api_type or "not given"))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label + ':':<{width + 1}} {value}" for label, value in rows)


def _amount(value: float | None) -> str:
    if value is None:
        return "not given"
    return str(int(value)) if value == int(value) else f"{value:.2f}"

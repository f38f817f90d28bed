"""What tasks cost: RH coins, and money with its currency.

Consumer keys pay RH coins; enterprise keys pay money (``consumeMoney``, and
``thirdPartyConsumeMoney`` for third-party APIs) in the currency ``accountStatus`` gives. A task
records both (``coins``; ``money`` and ``currency`` where money was charged). Sums of money are
kept per currency (``{"CNY": 0.06}``; ``""`` when the server gave no currency), since keys of
two sites would pay in two. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol


class Charged(Protocol):
    """Anything that carries a task's cost (a store record, a manifest entry)."""

    @property
    def coins(self) -> float | None: ...

    @property
    def money(self) -> float | None: ...

    @property
    def currency(self) -> str | None: ...


def money_totals(tasks: Iterable[Charged]) -> dict[str, float]:
    """The money ``tasks`` cost, summed per currency (empty when none was charged)."""
    totals: dict[str, float] = {}
    for task in tasks:
        if task.money is not None:
            key = task.currency or ""
            totals[key] = round(totals.get(key, 0.0) + task.money, 6)
    return totals


def money_amount(totals: Mapping[str, float]) -> float:
    """All of ``totals`` as one number (what ``--max-money`` compares: a run pays in its key's
    currency)."""
    return round(sum(totals.values()), 6)


def amount_text(value: float) -> str:
    """``0.06``, ``1.50``, ``0.0025``: at least two decimals, no trailing noise."""
    text = f"{value:.6f}".rstrip("0")
    whole, _, decimals = text.partition(".")
    return f"{whole}.{decimals.ljust(2, '0')}"


def money_text(totals: Mapping[str, Any]) -> str:
    """``0.06 CNY`` (``0.06 money`` without a currency; ``+`` between currencies)."""
    if not totals:
        return "0.00 money"
    return " + ".join(f"{amount_text(float(v))} {k or 'money'}" for k, v in sorted(totals.items()))


def coins_text(value: float) -> str:
    return f"{value:g} coin{'' if value == 1 else 's'}"


def spend_text(coins: float, money: Mapping[str, Any] | None) -> str:
    """``3 coins``, or ``0 coins / 0.06 CNY`` where money was charged."""
    return coins_text(coins) + (f" / {money_text(money)}" if money else "")

"""A pool of API keys for one run: each key has its own slots, a task goes to a key with a
free slot, and a key the server refuses is taken out while the others go on.

``RH_API_KEY`` may hold several keys separated by commas (or ``--api-key`` is repeated). Each
key gets ``slots`` tasks in flight (the run's concurrency, per key), so two keys of concurrency
2 run four tasks at once. A key is named everywhere by its fingerprint
(``rhflow.api.client.key_fingerprint``), never by any part of itself; the state store records
which key created each task, so that following, re-attaching and cancelling it use that key.
With one key the pool behaves exactly as a single client did.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from rhflow.api.client import Account, Output
from rhflow.api.results import task_charges
from rhflow.record.store import TaskRecord


@dataclass(slots=True)
class PoolKey:
    """One key of the pool: its client, its name, its slots and whether it is out."""

    client: Any
    fingerprint: str
    slots: int
    used: int = 0
    out: str | None = None  # why the key was taken out of the pool

    @property
    def free(self) -> bool:
        return self.out is None and self.used < self.slots


class KeyPool:
    """Slots per key, handed out on the executor's event loop."""

    def __init__(self, clients: list[Any], slots: int) -> None:
        if not clients:
            raise ValueError("a key pool needs at least one client")
        self.keys = [PoolKey(c, _fingerprint(c, i), max(1, slots)) for i, c in enumerate(clients)]
        self._changed: asyncio.Condition | None = None
        self.checked = False  # accountStatus was asked for every key
        self.accounts: dict[str, Account] = {}  # its answers, by fingerprint

    @property
    def total_slots(self) -> int:
        return sum(k.slots for k in self.keys if k.out is None)

    @property
    def active(self) -> list[PoolKey]:
        return [k for k in self.keys if k.out is None]

    @property
    def primary(self) -> Any:
        """The client for requests that belong to no task's key (uploads, downloads)."""
        active = self.active
        return (active[0] if active else self.keys[0]).client

    def abort(self) -> None:
        """End the requests every key's client has in flight (clients without ``abort``, such
        as a test's own, are left to their deadlines)."""
        for key in self.keys:
            end = getattr(key.client, "abort", None)
            if end is not None:
                end()

    def balance(self) -> Account | None:
        """The coins (and money) left on the keys still in the pool, summed (None if one is
        not known; money None unless every key gives it)."""
        known = [self.accounts.get(k.fingerprint) for k in self.active]
        if not known or any(a is None or a.remain_coins is None for a in known):
            return known[0] if len(known) == 1 else None
        accounts = [a for a in known if a is not None]
        total = sum(a.remain_coins or 0.0 for a in accounts)
        moneys = [a.remain_money for a in accounts]
        money = None if None in moneys else sum(m or 0.0 for m in moneys)
        return replace(accounts[0], remain_coins=total, remain_money=money)

    def charged(self, outputs: Sequence[Output], record: TaskRecord | None) -> dict[str, Any]:
        """The ``coins``, ``money`` and ``currency`` of a task's ``record``, from its outputs;
        the currency is the one accountStatus gave for the key that created the task (else
        for another key of the pool, since one run talks to one site; else the recorded one)."""
        coins, money = task_charges(outputs)
        currency = None
        if money is not None:
            mine = self.accounts.get(record.key or "") if record else None
            known = [a.currency for a in (mine, *self.accounts.values()) if a and a.currency]
            currency = known[0] if known else record.currency if record else None
        return {"coins": coins, "money": money, "currency": currency}

    def client_for(self, fingerprint: str | None) -> Any:
        """The client of the key that created a task (the primary one if unknown)."""
        for key in self.keys:
            if key.fingerprint == fingerprint:
                return key.client
        return self.primary

    def has(self, fingerprint: str | None) -> bool:
        return any(k.fingerprint == fingerprint for k in self.keys)

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def acquire(self) -> PoolKey | None:
        """A key with a free slot (the least used first), waiting for one; None when every
        key is out of the pool."""
        changed = self._condition()
        async with changed:
            while True:
                free = [k for k in self.keys if k.free]
                if free:
                    key = min(free, key=lambda k: k.used / k.slots)
                    key.used += 1
                    return key
                if not self.active:
                    return None
                await changed.wait()

    async def release(self, key: PoolKey) -> None:
        changed = self._condition()
        async with changed:
            key.used = max(0, key.used - 1)
            changed.notify_all()

    async def retire(self, key: PoolKey, reason: str) -> bool:
        """Take ``key`` out of the pool; True the first time (the caller reports it)."""
        changed = self._condition()
        async with changed:
            if key.out is not None:
                return False
            key.out = reason
            changed.notify_all()
            return True

    def retire_now(self, key: PoolKey, reason: str) -> None:
        """Before the run starts (no waiters yet): take ``key`` out."""
        key.out = key.out or reason


def key_out_message(fingerprint: str, reason: str) -> str:
    return f"API key {fingerprint} taken out of the pool ({reason}); the other keys go on"


def no_balance(account: Any) -> bool:
    """accountStatus says the key has neither coins nor money left."""
    coins = getattr(account, "remain_coins", None)
    money = getattr(account, "remain_money", None)
    return coins is not None and coins <= 0 and (money is None or money <= 0)


def _fingerprint(client: Any, index: int) -> str:
    return str(getattr(client, "fingerprint", f"key-{index:012d}"))

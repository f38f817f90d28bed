"""Shared fixtures: a RunningHub emulator on a real loopback socket, and no other network."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from rhflow.emulator import Emulator

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _check_loopback(address: Any) -> None:
    if not isinstance(address, tuple):  # AF_UNIX paths and the like
        return
    host = address[0]
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        if host == "localhost":
            return
    raise AssertionError(f"test tried to reach {host!r}: tests may only talk to loopback")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check_loopback(address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check_loopback(address)
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection to a non-loopback address fails the test loudly."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded_connect_ex)


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up a real key or base URL from the developer's environment."""
    monkeypatch.delenv("RH_API_KEY", raising=False)
    monkeypatch.delenv("RH_BASE_URL", raising=False)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test has a workflow cache of its own: one cached under ~/.cache by an earlier test
    or run (for an emulator that had the same port) would stand in for a fetch the test makes."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    """One emulator for the whole session, with short tasks; tests must not change its config.

    Its tasks start at once (no queueing), for tests that need exact timing, and its keys pay RH
    coins (a consumer account, 50 tasks at once) for tests that count coins; ``make_emulator``
    keeps the defaults: queueing, as real tasks wait in QUEUED, and enterprise keys."""
    from rhflow.emulator import Emulator, EmulatorConfig

    config = EmulatorConfig(
        task_seconds=(0.2, 0.2),
        queue_seconds=(0.0, 0.0),
        account="consumer",
        concurrency=50,
        seed=1,
    )
    with Emulator(config) as emu:
        yield emu


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., Emulator]]:
    """Start emulators with a config of the test's own; all are stopped at the end of the test."""
    from rhflow.emulator import Emulator, EmulatorConfig

    started: list[Emulator] = []

    def start(**config: Any) -> Emulator:
        config.setdefault("task_seconds", (0.2, 0.2))
        emu = Emulator(EmulatorConfig(**config))
        emu.start()
        started.append(emu)
        return emu

    yield start
    for emu in started:
        emu.stop()


API_KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def api_key() -> str:
    return API_KEY

"""A run never counts work that was not done here: results belong to a server, an unreachable
server is said at once, and the key is masked without mangling messages."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rhflow.api.client import Client
from rhflow.cli import main
from rhflow.emulator import Emulator
from rhflow.errors import ApiError, UnreachableError, redact
from tests.test_run_cli import pipeline

EmulatorFactory = Callable[..., Emulator]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RH_BASE_URL", raising=False)


def run(path: Path, *args: str) -> int:
    return main(["run", str(path), "-q", *args])


def test_results_of_another_server_are_refused_before_anything_is_sent(
    make_emulator: EmulatorFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RH_API_KEY", "k" * 32)
    first, second = make_emulator(), make_emulator()
    path = pipeline(tmp_path)
    assert run(path, "--base-url", first.url) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["server"]["emulated"] is True
    assert manifest["server"]["origin"] == first.url
    assert {t["server"] for t in manifest["tasks"]} == {first.url}
    capsys.readouterr()

    assert run(path, "--base-url", second.url) == 2
    err = capsys.readouterr().err
    assert first.url in err and second.url in err and "--force" in err and "--out" in err
    assert sum(second.stats()["requests"].values()) == 0  # nothing at all was sent

    assert run(path, "--base-url", second.url, "--force") == 0
    assert second.stats()["tasks"]["created"] == 2
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert {t["server"] for t in manifest["tasks"]} == {second.url}


def test_the_builtin_emulator_counts_as_one_server_across_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = pipeline(tmp_path, seeds=1)
    assert run(path, "--emulator") == 0
    assert run(path, "--emulator") == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["server"] == {"origin": "emulator://built-in", "emulated": True}
    assert all(t["emulated"] for t in manifest["tasks"])


@pytest.mark.parametrize(
    ("url", "cause"),
    [
        ("http://127.0.0.1:9", "Connection refused"),
        ("http://no-such-host.invalid", "could not be resolved"),
    ],
)
def test_an_unreachable_server_ends_the_run_at_once_with_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    url: str,
    cause: str,
) -> None:
    monkeypatch.setenv("RH_API_KEY", "k" * 32)
    started = time.monotonic()
    code = run(pipeline(tmp_path, seeds=6), "--base-url", url)
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "cannot reach" in err and cause in err
    assert "RunningHub answered" not in err
    assert elapsed < 30  # not minutes of retries (the figure is in the closing note)


def test_a_drop_after_the_first_answer_is_a_transient_fault(
    make_emulator: EmulatorFactory,
) -> None:
    emu = make_emulator()
    with Client("k" * 32, emu.url) as client:
        client.account()
        emu.stop()
        with pytest.raises(ApiError) as info:
            client.account()
    assert not isinstance(info.value, UnreachableError) and info.value.retryable


def test_a_key_is_masked_as_a_whole_token_and_a_short_key_not_in_free_text() -> None:
    key = "sk0123456789abcdef"
    assert redact(f"apiKey={key}, Bearer {key}.", key) == "apiKey=***, Bearer ***."
    assert redact(f"x{key}y", key) == f"x{key}y"  # part of another word: not this key
    assert redact("Max retries exceeded", "x") == "Max retries exceeded"

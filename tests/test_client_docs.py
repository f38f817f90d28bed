"""docs/reference/client.md stays true: its example runs on the emulator, its tables match code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rhflow import errors
from rhflow.api.client import Client
from rhflow.emulator import TEXT_TO_IMAGE, Emulator
from rhflow.errors import InvalidNodeInfoError

PAGE = Path(__file__).resolve().parent.parent / "docs" / "reference" / "client.md"
DOC = PAGE.read_text(encoding="utf-8")


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC, flags=re.S)


def test_the_first_example_runs_against_the_emulator(
    emulator: Emulator,
    api_key: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RH_BASE_URL", emulator.url)
    monkeypatch.setenv("RH_API_KEY", api_key)
    monkeypatch.chdir(tmp_path)
    exec(compile(_python_blocks()[0], "docs/reference/client.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"task \d{19} (QUEUED|RUNNING)", printed[0])
    assert re.fullmatch(r"out-0\.png \d+ bytes, sha256 [0-9a-f]{12}", printed[1])
    assert (tmp_path / "out-0.png").read_bytes().startswith(b"\x89PNG")


def test_the_error_table_matches_the_error_classes() -> None:
    rows = re.findall(
        r"^\| `(\w+Error)` \| (\d+) \| `(\w+)` \| (yes)? \| (yes)? \| (yes)? \|$", DOC, flags=re.M
    )
    documented = {
        name: (int(code), ident, bool(r), bool(b), bool(f)) for name, code, ident, r, b, f in rows
    }
    actual = {
        cls.__name__: (cls.code, cls.name, cls.retryable, cls.busy, cls.fatal)
        for cls in (
            errors.TransportError,
            errors.BadResponseError,
            errors.RefusedAnswerError,
            errors.ForeignRedirectError,
            *errors.API_ERRORS.values(),
        )
    }
    assert documented == actual


def test_the_quoted_error_sentence_is_what_the_client_raises(
    emulator: Emulator, api_key: str
) -> None:
    with Client(api_key, emulator.url) as client, pytest.raises(InvalidNodeInfoError) as info:
        client.create_task(TEXT_TO_IMAGE, [{"nodeId": "42", "fieldName": "text", "fieldValue": 1}])
    quoted = re.search(r"^RunningHub answered 803 .*$", DOC, flags=re.M)
    assert quoted is not None
    assert str(info.value) == quoted.group(0)

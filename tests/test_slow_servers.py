"""A slow server cannot hold ``rhflow run`` for long: a download that stalls or drips is
abandoned at its minimum rate, headers that never end at the headers deadline (issue 15: six
such scenarios ran past 75 s). Each test sets small bounds so that it takes seconds; one
checks that the defaults are those the documentation gives."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hostile import PIPELINE, PNG, Hostile, raw, stall, stream, trickle

from rhflow.api.client import CONNECT_TIMEOUT, MIN_DOWNLOAD_RATE, Client, MinRate
from rhflow.errors import UsageError
from rhflow.execute.runner import RunResult, run_pipeline
from rhflow.execute.scheduling import Backoff, PollPolicy, parse_rate

ROOT = Path(__file__).resolve().parent.parent
KEY = "slow-server-test-key-0123456789abcdef"
FAST = {
    "api_backoff": Backoff(base=0.02, cap=0.1),
    "retry_backoff": Backoff(base=0.02, cap=0.1),
    "api_retries": 2,
    "download_retries": 2,
}
QUICK_POLL = PollPolicy(first=0.1, factor=1.5, cap=0.4)
#: The overall download deadline stays far away: only the bound under test can end these.
FAR = {"download_timeout": 60.0}


@pytest.fixture
def hostile() -> Any:
    with Hostile() as h:
        yield h


def run(h: Hostile, root: Path, **limits: Any) -> tuple[RunResult, float]:
    path = root / "pipeline.yaml"
    path.write_text(PIPELINE.format(template="img-{{ index }}.png"))
    started = time.monotonic()
    with Client(KEY, h.api.url, **{**FAR, **limits}) as client:
        result = run_pipeline(
            path, client=client, poll=QUICK_POLL, execute_options=FAST, out=root / "out"
        )
    return result, time.monotonic() - started


def failure(result: RunResult) -> str:
    (task,) = result.manifest.tasks
    return task.failure or ""


def serve(h: Hostile, handler: Any, path: str = "/files/slow") -> str:
    h.outputs = [{"fileUrl": "{api}" + path, "fileType": "png"}]
    h.api.routes[("GET", path)] = handler
    return h.api.url + path


def test_a_dripped_file_is_abandoned_at_the_minimum_rate(hostile: Hostile, tmp_path: Path) -> None:
    """A byte every 50 ms never trips a read timeout: before the minimum rate, only the
    download deadline (1800 s by default) ended it."""
    url = serve(hostile, stream(chunk=b"\0", delay=0.05))
    result, elapsed = run(hostile, tmp_path, min_download_rate=MinRate(1024, 1.0))
    said = failure(result)
    assert re.search(
        rf"downloading {re.escape(url)} stalled: \d+ bytes in the last 1 s \(\d+ bytes/s, \d+ "
        r"bytes in all\), less than the 1 KiB every 1 s required; lower --min-download-rate if "
        r"the file host is that slow; run again to retry the download \(the task is not run "
        r"again\)$",
        said,
    ), said
    assert elapsed < 8
    (task,) = result.manifest.tasks
    assert task.status == "failed" and task.outputs[0].path is None
    assert list((tmp_path / "out" / ".rhflow" / "partial").iterdir()) == []
    # a stall may be a hiccup: tried once more, then given up (never five times as a dropped
    # connection is)
    assert len([s for s in hostile.api.seen if s.path == "/files/slow"]) == 2


def test_a_file_that_stalls_once_is_fetched_whole_on_the_second_try(
    hostile: Hostile, tmp_path: Path
) -> None:
    """A stall can be a passing hiccup of the network: the file is asked for once more."""
    calls: list[int] = []
    first, whole = stall(PNG[:100], len(PNG)), raw(PNG, content_type="image/png")

    async def handle(request: Any) -> Any:
        calls.append(1)
        return await (first if len(calls) == 1 else whole)(request)

    serve(hostile, handle)
    result, _ = run(hostile, tmp_path, min_download_rate=MinRate(1024, 1.0))
    (task,) = result.manifest.tasks
    assert task.status == "succeeded", task.failure
    assert len(calls) == 2
    assert (tmp_path / "out" / task.outputs[0].path).read_bytes() == PNG


def test_a_file_that_stops_mid_way_is_abandoned_while_its_read_blocks(
    hostile: Hostile, tmp_path: Path
) -> None:
    """2 KiB, then nothing: the read blocks until the read timeout (30 s here); the
    watchdog shuts the connection at the end of the second window instead."""
    url = serve(hostile, stall((PNG * 2)[:2048], 1 << 20))
    result, elapsed = run(hostile, tmp_path, timeout=30.0, min_download_rate=MinRate(1024, 1.0))
    assert failure(result) == (
        "downloading output 0 failed: RunningHub answered 0 STALLED: downloading "
        f"{url} stalled: 0 bytes in the last 1 s (0 bytes/s, 2048 bytes in all), less than "
        "the 1 KiB every 1 s required; lower --min-download-rate if the file host is that "
        "slow; run again to retry the download (the task is not run again)"
    )
    assert 1.5 < elapsed < 8


def test_a_slow_file_above_the_minimum_rate_is_downloaded(hostile: Hostile, tmp_path: Path) -> None:
    """40 KiB at 20 KiB/s passes a floor of 4 KiB per 0.5 s: progress is counted as it
    arrives, not per 64 KiB read (which would see nothing until the file ended)."""
    data = PNG * 40
    serve(hostile, trickle(data, 2048, 0.1))
    result, _ = run(hostile, tmp_path, min_download_rate=MinRate(4096, 0.5))
    assert result.manifest.status == "succeeded", failure(result)
    assert (tmp_path / "out" / "img-0.png").read_bytes() == data


def test_headers_that_never_end_are_abandoned_at_the_headers_deadline(
    hostile: Hostile, tmp_path: Path
) -> None:
    """One header line, a byte every 100 ms: before the headers deadline, only the download
    deadline (1800 s by default) ended it."""
    hostile.outputs = [{"fileUrl": "{raw}/slow-line.png", "fileType": "png"}]
    result, elapsed = run(hostile, tmp_path, headers_timeout=1.0)
    assert failure(result).endswith(
        f"downloading {hostile.api.raw_url}/slow-line.png: the server sent no complete headers "
        "within 1 s; run again to retry the download (the task is not run again)"
    ), failure(result)
    assert elapsed < 8
    assert hostile.api.raw_seen == 1  # not retried


def test_more_than_100_header_lines_are_refused_not_retried(
    hostile: Hostile, tmp_path: Path
) -> None:
    """http.client stops at 100 header lines; that was taken for a network fault ("the server
    could not be reached") and retried 5 times: 74 s with the hostile drip of issue 15."""
    hostile.api.header_delay = 0.005
    hostile.outputs = [{"fileUrl": "{raw}/slow.png", "fileType": "png"}]
    result, elapsed = run(hostile, tmp_path)
    assert failure(result) == (
        "downloading output 0 failed: RunningHub answered 0 REFUSED_ANSWER: downloading "
        f"{hostile.api.raw_url}/slow.png: the server's headers were refused (got more than "
        "100 headers); run again to retry the download (the task is not run again)"
    )
    assert elapsed < 8
    assert hostile.api.raw_seen == 1


def test_the_minimum_rate_can_be_turned_off(hostile: Hostile, tmp_path: Path) -> None:
    serve(hostile, stream(chunk=b"\0", delay=0.05))
    result, elapsed = run(hostile, tmp_path, download_timeout=2.0, min_download_rate=None)
    assert "took longer than 2 s" in failure(result)
    assert elapsed < 8


def test_the_download_bounds_are_those_the_documentation_gives() -> None:
    client = Client(KEY, "http://127.0.0.1:9")
    assert client.min_download_rate == MIN_DOWNLOAD_RATE == MinRate(1024, 15.0)
    assert client.headers_timeout == CONNECT_TIMEOUT + client.timeout == 35.0
    assert client.download_timeout == 1800.0
    readme = (ROOT / "README.md").read_text()
    cli = (ROOT / "docs" / "reference" / "cli.md").read_text()
    limits = (ROOT / "docs" / "reference" / "client.md").read_text()
    assert "less than 1 KiB in 15 s" in readme
    assert "[default: 1KB/15s]" in cli
    assert "`min_download_rate=MinRate(1024, 15.0)`" in limits
    assert "35 s" in limits and "headers_timeout=" in limits


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("1KB/15s", MinRate(1024, 15.0)),
        ("64k/2", MinRate(65536, 2.0)),
        ("100/0.5s", MinRate(100, 0.5)),
        ("off", None),
    ],
)
def test_min_download_rate_parses(text: str, rate: MinRate | None) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["fast", "1KB", "1KB/0s", "0/15s", "1KB/inf"])
def test_a_bad_min_download_rate_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_rate(text)
    assert str(info.value) == (
        f"--min-download-rate {text!r} is not a rate: write a size, a slash and seconds, e.g. "
        "--min-download-rate 1KB/15s (at least 1 KB in every 15 s), or off"
    )


def test_the_slow_server_benchmark_runs_a_scenario_through_the_cli(tmp_path: Path) -> None:
    """``python -m benchmarks.slow_servers`` (its figures are the benchmark's to report)."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.slow_servers", "--only", "huge Content-Length"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    row = json.loads(done.stdout.splitlines()[0])
    assert (row["scenario"], row["exit"], row["traceback"]) == ("huge Content-Length", 1, False)
    assert "1 scenarios, default settings: 0 past 75 s; slowest" in done.stdout

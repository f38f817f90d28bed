"""A server that stops answering stops the run, soon, and the next run resumes it: after a
few API requests in a row got no answer (``rhflow.execute.breaker``) no task is created any
more, the tasks created are left recorded as they are, and the run ends with exit code 3 and a
message saying so and how to resume. Issue 15: an answer that never came was waited for and
retried by each task, 7 times 30 s."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dropping_proxy import DroppingProxy
from test_pay_once import write_pipeline

from rhflow.api.client import Client
from rhflow.emulator import Emulator
from rhflow.errors import TransportError, UsageError
from rhflow.execute.breaker import SERVER_STOPPED, Breaker
from rhflow.execute.executor import NOT_CANCELLED
from rhflow.execute.runner import RunResult, exit_code, run_pipeline
from rhflow.execute.scheduling import Backoff, ExecuteOptions, PollPolicy

ROOT = Path(__file__).resolve().parent.parent


class Events:
    shows_progress = False

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def emit(self, event: str, **fields: Any) -> None:
        self.seen.append({"event": event, **fields})

    def close(self) -> None:
        pass


def run(url: str, path: Path, key: str, events: Events | None = None) -> tuple[RunResult, float]:
    """A run whose API answers must come within 0.5 s, stopped after 1 s without any."""
    options = {"api_backoff": Backoff(0.02, cap=0.1), "silent_seconds": 1.0}
    started = time.monotonic()
    with Client(key, url, timeout=0.5) as client:
        result = run_pipeline(
            path,
            client=client,
            poll=PollPolicy(first=0.1, cap=0.3),
            execute_options=options,
            reporter=events,
        )
    return result, time.monotonic() - started


def manifest_of(result: RunResult) -> dict[str, Any]:
    return json.loads(result.manifest_path.read_text())


def test_a_server_that_stops_answering_stops_the_run_and_the_next_run_resumes(
    make_emulator: Callable[..., Emulator],
    api_key: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    emu = make_emulator(task_seconds=(3.0, 3.0))
    path = write_pipeline(tmp_path, 5, concurrency=3)
    with DroppingProxy(emu.url) as proxy:
        proxy.silent_after = 2  # two creates answered; the third, and every poll, not
        events = Events()
        result, elapsed = run(proxy.url, path, api_key, events)
        assert elapsed < 10
        assert exit_code(result.manifest) == 3
        (error,) = result.manifest.errors
        assert error.startswith(f"{SERVER_STOPPED}: ")
        assert error.endswith(
            "no more tasks are created, and those created are left as they are. Run the same "
            "command again once the server answers: it picks them up and creates only the "
            "tasks never created (one whose create got no answer is flagged 'may have been "
            "created twice')"
        )
        assert emu.stats()["tasks"]["created"] == 2
        assert proxy.unanswered <= 6  # not every task's 7 tries
        data = manifest_of(result)
        by_status: dict[str, list[dict[str, Any]]] = {}
        for task in data["tasks"]:
            by_status.setdefault(task["status"], []).append(task)
        assert len(by_status.pop("running")) == 2  # recorded with their ids, not cancelled
        flagged = [t for t in data["tasks"] if t["maybe_twice"]]
        assert len(flagged) == 1 and flagged[0]["task_id"] is None  # its create got no answer
        said = [e for e in events.seen if e.get("task") == flagged[0]["id"]]
        assert "task_cancelled" not in [e["event"] for e in said]  # nothing could cancel it
        assert any(str(e.get("message", "")).endswith(NOT_CANCELLED) for e in said)
        assert sum(map(len, by_status.values())) == 3

        proxy.speak()
        again, _ = run(proxy.url, path, api_key)
    assert again.manifest.status == "succeeded", again.manifest.errors
    assert exit_code(again.manifest) == 0
    # the two tasks created are picked up, not created again; the three others created once
    assert emu.stats()["tasks"]["created"] == 5
    assert manifest_of(again)["maybe_twice"] == 1  # said, though the proxy never sent it


def test_a_server_that_refuses_connections_stops_rhflow_run_with_exit_code_3(
    make_emulator: Callable[..., Emulator], api_key: str, tmp_path: Path
) -> None:
    """Through the CLI: the message and the way out, no traceback, exit 3. Refused at once,
    each request is retried quickly: only the time without an answer trips the breaker."""
    emu = make_emulator(task_seconds=(3.0, 3.0))
    path = write_pipeline(tmp_path, 4, concurrency=2)
    with DroppingProxy(emu.url) as proxy:
        proxy.refuse_after = 2
        env = {**os.environ, "RH_API_KEY": api_key, "PYTHONPATH": str(ROOT)}
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "rhflow", "run", str(path), "-q", "--server-silence", "2"],
            cwd=tmp_path,
            env={**env, "RH_BASE_URL": proxy.url},
            capture_output=True,
            text=True,
            timeout=120,
        )
    elapsed = time.monotonic() - started
    said = done.stdout + done.stderr
    assert done.returncode == 3, said
    assert "Traceback" not in said
    assert f"{SERVER_STOPPED}: " in said and "Run the same command again" in said
    assert elapsed < 20
    assert emu.stats()["tasks"]["created"] == 2
    data = json.loads((tmp_path / "out" / "manifest.json").read_text())
    statuses = sorted(t["status"] for t in data["tasks"])
    assert statuses == ["pending", "pending", "running", "running"]


def test_the_breaker_trips_after_requests_in_a_row_without_answer_over_its_time() -> None:
    now = [0.0]
    trips: list[str] = []
    breaker = Breaker(2, 45.0, clock=lambda: now[0], on_trip=trips.append)
    lost = TransportError("POST /task/openapi/outputs timed out: no complete answer within 30 s")
    now[0] = 30.0
    breaker.observe(lost, sent=0.0)  # one request, 30 s
    now[0] = 31.0
    breaker.observe(lost, sent=0.5)  # two in a row, but over 31 s only: one round
    assert breaker.tripped is None
    breaker.answered()  # an answer, whatever it says, starts the count again
    now[0] = 61.0
    breaker.observe(lost, sent=31.0)
    now[0] = 80.0
    breaker.observe(lost, sent=61.0)  # two in a row, over 49 s
    assert trips == [breaker.tripped]
    assert str(breaker.tripped).startswith(
        f"{SERVER_STOPPED}: 2 API requests in a row got no answer over 49 s (the last: "
        "RunningHub answered 0 CONNECTION_ERROR: POST /task/openapi/outputs timed out"
    )
    breaker.observe(lost, sent=80.0)
    assert len(trips) == 1


def test_an_error_answer_is_an_answer() -> None:
    from rhflow.errors import ServerError

    now = [0.0]
    breaker = Breaker(2, 1.0, clock=lambda: now[0])
    lost = TransportError("POST /x failed: Connection refused")
    for second in range(10):
        now[0] = float(second)
        breaker.observe(lost if second % 2 else ServerError("HTTP 502"), sent=now[0])
    assert breaker.tripped is None


def test_the_breaker_defaults_are_those_the_documentation_gives() -> None:
    options = ExecuteOptions()
    assert (options.silent_requests, options.silent_seconds) == (2, 45.0)
    readme = (ROOT / "README.md").read_text()
    assert "2 API requests in a row get no answer over 45 s or more" in readme
    assert "[default: 45]" in (ROOT / "docs" / "reference" / "cli.md").read_text()


def test_a_bad_server_silence_is_a_usage_error(tmp_path: Path, api_key: str) -> None:
    path = write_pipeline(tmp_path, 1, concurrency=1)
    with pytest.raises(UsageError) as info:
        run_pipeline(path, api_key=api_key, base_url="http://127.0.0.1:9", server_silence=0)
    assert str(info.value) == "--server-silence 0 must be a positive number of seconds"


def test_an_upload_whose_answer_never_comes_stops_the_run_without_creating(
    tmp_path: Path,
) -> None:
    """The upload's own deadline is long (a large file takes time to send); once it is sent,
    its answer must come within ``timeout``, and two such silences stop the run. Before, each
    upload waited out its whole deadline, 7 times."""
    from hostile import KEY, PNG, Hostile, silent

    (tmp_path / "face.png").write_bytes(PNG)
    (tmp_path / "wf.json").write_text(
        json.dumps({"2": {"class_type": "LoadImage", "inputs": {"image": "x.png"}}})
    )
    path = tmp_path / "p.yaml"
    path.write_text(
        "version: 1\nname: upload\noutput: out\nsteps:\n  gen:\n"
        '    workflow: "1904136902449209346"\n    workflow_file: wf.json\n    retries: 0\n'
        '    nodes:\n      "2": {image: {file: face.png}}\n    outputs: "img-{{ index }}.png"\n'
    )
    with Hostile() as h:
        h.api.routes[("POST", "/task/openapi/upload")] = silent()
        options = {"api_backoff": Backoff(0.02, cap=0.1), "silent_seconds": 1.0}
        started = time.monotonic()
        with Client(KEY, h.api.url, timeout=0.5, upload_timeout=20) as client:
            result = run_pipeline(
                path, client=client, execute_options=options, out=tmp_path / "out"
            )
        elapsed = time.monotonic() - started
        uploads = [s for s in h.api.seen if s.path == "/task/openapi/upload"]
        creates = [s for s in h.api.seen if s.path == "/task/openapi/create"]
    assert exit_code(result.manifest) == 3
    (error,) = result.manifest.errors
    assert re.match(
        rf"{SERVER_STOPPED}: 2 API requests in a row got no answer over \d+ s \(the last: "
        r"RunningHub answered 0 CONNECTION_ERROR: POST /task/openapi/upload timed out: no "
        r"answer within 0\.5 s of the request being sent",
        error,
    ), error
    assert elapsed < 8
    assert (len(uploads), creates) == (2, [])
    assert [t.status for t in result.manifest.tasks] == ["pending"]


def test_abort_ends_a_request_waiting_on_a_silent_server_at_once(api_key: str) -> None:
    """What a run does when it stops because the server stopped answering: the requests its
    threads still wait on end now, not at their deadline (30 s here), so the program can end
    right after its summary."""
    import threading

    from hostile import Server, silent

    server = Server().start()
    server.routes[("POST", "/uc/openapi/accountStatus")] = silent()
    ended: list[BaseException] = []
    try:
        with Client(api_key, server.url, timeout=30.0) as client:

            def ask() -> None:
                try:
                    client.account()
                except BaseException as exc:  # what the thread ended with
                    ended.append(exc)

            waiting = threading.Thread(target=ask)
            waiting.start()
            time.sleep(0.5)  # the request is sent and waits
            started = time.monotonic()
            client.abort()
            waiting.join(5)
            assert not waiting.is_alive()
            assert time.monotonic() - started < 2
    finally:
        server.stop()
    assert [type(e) for e in ended] == [TransportError]

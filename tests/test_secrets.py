"""A server that echoes the API key in its text never gets it into anything rhflow writes.

Each scenario makes the hostile server (tests/hostile.py) put the key in one place of its
answers; ``rhflow -v run --json`` and ``rhflow status`` (plain and --json) then run as a user
would, and the key must appear in none of their stdout and stderr (events, summary, log lines)
nor in any file under the output folder (manifest.json, .rhflow/state.db and its journal, the
outputs). The masked text itself must still arrive (``***``), so a scenario that never reached
its echo cannot pass.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from hostile import PIPELINE, Handler, Hostile, answer, raw, redirect, websocket

KEY = "sk-echoed-0123456789abcdef0123456789"


def _failed(h: Hostile, **reason: object) -> None:
    base = {"node_id": "3", "node_name": "KSampler", "exception_type": "RuntimeError"}
    data = {"failedReason": {**base, "exception_message": "boom", **reason}}
    h.api.routes[("POST", "/task/openapi/outputs")] = answer(data, 805, "APIKEY_TASK_STATUS_ERROR")


def _tips(h: Hostile) -> None:
    tips = {"node_errors": {"6": {"class_type": "CLIPTextEncode", "errors": [{"message": KEY}]}}}
    data = {"promptTips": json.dumps(tips)}
    h.api.routes[("POST", "/task/openapi/create")] = answer(data, 433, "VALIDATE_PROMPT_FAILED")


def _escaped(h: Hostile) -> None:
    """The key spelt with JSON escapes: only a decoded answer shows it."""
    spelt = "".join(f"\\u{ord(c):04x}" for c in KEY)
    body = '{"code": 803, "msg": "node 6 has no field ' + spelt + '", "data": null}'
    h.api.routes[("POST", "/task/openapi/create")] = raw(body, content_type="application/json")


def _socket(h: Hostile) -> None:
    url = h.url("{api}/ws/c_instance?taskId=1").replace("http", "ws")
    h.create = {**h.create, "netWssUrl": url}
    frames = [
        {"type": "execution_start", "data": {"prompt_id": "1"}},
        {"type": "executing", "data": {"node": KEY}},
        {"type": "progress", "data": {"node": KEY, "value": 1, "max": 2}},
        {"type": "execution_success", "data": {"prompt_id": "1"}},
    ]
    h.api.routes[("GET", "/ws/c_instance")] = websocket(frames)


def _once(h: Hostile, route: tuple[str, str], first: Handler) -> None:
    """``first`` answers the route's first request, its usual handler the others: the run
    retries past it, and the retry's reason carries the (masked) text."""
    usual, calls = h.api.routes[route], []

    async def handle(request: web.Request) -> web.StreamResponse:
        calls.append(1)
        return await (first if len(calls) == 1 else usual)(request)

    h.api.routes[route] = handle


CREATE, OUTPUTS = ("POST", "/task/openapi/create"), ("POST", "/task/openapi/outputs")
SCENARIOS: dict[str, Callable[[Hostile], None]] = {
    "failedReason.exception_message": lambda h: _failed(h, exception_message=f"bad key {KEY}"),
    "failedReason.traceback": lambda h: _failed(h, traceback=["File x", f"key={KEY}"]),
    "failedReason.node_name": lambda h: _failed(h, node_name=f"Loader({KEY})"),
    "failedReason as a string": lambda h: _failed(h, exception_type=f"E{KEY}"),
    "msg of a create error": lambda h: h.api.routes.__setitem__(
        CREATE, answer(None, 803, f"no field 'seed' ({KEY})")
    ),
    "promptTips of a 433": _tips,
    "msg with JSON escapes": _escaped,
    "an unknown code's msg": lambda h: h.api.routes.__setitem__(CREATE, answer(None, 1234, KEY)),
    "an HTML page with 200": lambda h: _once(h, OUTPUTS, raw(f"<html>{KEY}</html>")),
    "an HTTP 500 page": lambda h: _once(h, CREATE, raw(f"<h1>500</h1>{KEY}", 500)),
    "create answer fields": lambda h: h.create.update(clientId=KEY, promptTips=KEY),
    "nodeId of an output": lambda h: h.outputs[0].update(nodeId=KEY),
    "a text output": lambda h: h.outputs.__setitem__(0, {"text": f"key {KEY}", "fileType": "txt"}),
    "the fileUrl's query": lambda h: h.outputs[0].update(fileUrl="{api}/files/ok.png?k=" + KEY),
    "a redirect Location": lambda h: h.api.routes.__setitem__(
        CREATE, redirect(h.url("{other}/c?apiKey=" + KEY), 307)
    ),
    "the WebSocket's frames": _socket,
}

#: Scenarios whose masked text is kept nowhere (a redirect is named by its origin only; a
#: create answer's clientId and promptTips and a failure's traceback are not recorded).
SILENT = {"a redirect Location", "create answer fields", "failedReason.traceback"}


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    with Hostile() as h:
        yield h


def _rhflow(
    *args: str, cwd: Path, base_url: str, keys: str = KEY
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RH_API_KEY": keys, "RH_BASE_URL": base_url}
    return subprocess.run(
        [sys.executable, "-m", "rhflow", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_key_echoed_by_the_server_reaches_no_output_event_file_or_log(
    name: str, hostile: Hostile, tmp_path: Path
) -> None:
    SCENARIOS[name](hostile)
    (tmp_path / "p.yaml").write_text(PIPELINE.format(template="{{ index }}.{{ ext }}"))
    run = _rhflow("-v", "run", "p.yaml", "--json", cwd=tmp_path, base_url=hostile.api.url)
    status = _rhflow("status", "out", cwd=tmp_path, base_url=hostile.api.url)
    status_json = _rhflow("status", "out", "--json", cwd=tmp_path, base_url=hostile.api.url)
    streams = {
        "run stdout": run.stdout,
        "run stderr": run.stderr,
        "status": status.stdout + status.stderr,
        "status --json": status_json.stdout + status_json.stderr,
    }
    assert "Traceback" not in run.stderr
    assert json.loads(run.stdout.splitlines()[0])["event"] == "run_started"
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert tmp_path / "out" / "manifest.json" in files
    assert tmp_path / "out" / ".rhflow" / "state.db" in files
    found = [where for where, text in streams.items() if KEY in text]
    found += [str(p) for p in files if KEY.encode() in p.read_bytes()]
    assert found == []
    assert hostile.leaks(KEY) == []
    if name not in SILENT:  # the echo got through, masked
        shown = [where for where, text in streams.items() if "***" in text]
        shown += [str(p) for p in files if b"***" in p.read_bytes()]
        assert shown != []


def test_no_key_of_a_pool_reaches_any_output_whichever_client_it_is_echoed_to(
    hostile: Hostile, tmp_path: Path
) -> None:
    """The server gets every key of a pool and may echo any of them to any client."""
    second = "sk-second-fedcba9876543210fedcba98"
    _failed(hostile, exception_message=f"keys {KEY} and {second}")
    text = PIPELINE.format(template="{{ index }}.{{ ext }}").replace("retries: 0", "retries: 1")
    (tmp_path / "p.yaml").write_text(text)
    keys = f"{KEY},{second}"
    run = _rhflow("run", "p.yaml", "--json", cwd=tmp_path, base_url=hostile.api.url, keys=keys)
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert "keys *** and ***" in run.stdout
    for secret in (KEY, second):
        assert secret not in run.stdout + run.stderr
        assert [p for p in files if secret.encode() in p.read_bytes()] == []


def test_redact_all_masks_every_string_at_any_depth() -> None:
    from rhflow.errors import redact_all

    deep: list[object] = [f"x{KEY}y"]
    for _ in range(20000):  # deeper than any recursion would go
        deep = [deep]
    value = {KEY: [{"k": KEY, "n": 1, "b": None}], "deep": deep, "short": "abc"}
    masked = redact_all(value, KEY)
    inner = masked["deep"]
    while isinstance(inner, list) and isinstance(inner[0], list):
        inner = inner[0]
    assert inner == ["x***y"]
    assert masked["***"] == [{"k": "***", "n": 1, "b": None}] and masked["short"] == "abc"
    assert KEY in value  # the answer given is left as it was
    assert redact_all(value, "abc") is value  # a key too short to tell from words: untouched


def test_a_key_echoed_as_the_url_encoded_it_is_masked_too(tmp_path: Path) -> None:
    """``apiCallDemo`` takes the key in its URL, where ``+``, ``/`` and ``=`` travel
    percent-encoded; a server that echoes its query back shows the key in that spelling."""
    from hostile import Server

    key = "sk+slash/equals=0123456789abcdef0123"
    server = Server().start()

    async def echo(request: web.Request) -> web.StreamResponse:
        return web.json_response({"code": 1, "msg": f"bad query {request.query_string}"})

    server.routes[("GET", "/api/webapp/apiCallDemo")] = echo
    try:
        run = _rhflow("inspect", "app:123", cwd=tmp_path, base_url=server.url, keys=key)
    finally:
        server.stop()
    assert run.returncode != 0
    assert "bad query" in run.stderr and "***" in run.stderr
    for spelling in (key, "sk%2Bslash%2Fequals%3D0123", "sk%2Bslash/equals%3D0123", "sk+slash%2F"):
        assert spelling not in run.stdout + run.stderr

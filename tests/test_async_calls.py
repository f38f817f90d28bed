"""A run sends its creates and ``outputs`` polls over aiohttp (``rhflow.api.aio``), and they
answer exactly as the blocking client does: the same results, the same errors in the same
words, the key masked, the same "may have reached the server" flag. Each case asks one
server the same question both ways and compares."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from rhflow.api.aio import SPILL, AsyncCalls, new_session
from rhflow.api.client import Client, MinRate
from rhflow.emulator import Emulator
from rhflow.errors import ApiError, TransportError
from tests.hostile import PNG, TASK_ID, Server, answer, raw, redirect, silent, stall, stream
from tests.sweep_runs import write_sweep

KEY = "async-calls-key-0123456789abcdef"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server() -> Iterator[Server]:
    started = Server().start()
    yield started
    started.stop()


def both(client: Client, call: str, *args: Any) -> tuple[Any, Any]:
    """``call`` of the blocking client, and the same over aiohttp: each result or ApiError."""

    def blocking() -> Any:
        try:
            return getattr(client, call)(*args)
        except ApiError as err:
            return err

    async def over_aiohttp() -> Any:
        async with new_session() as session:
            try:
                return await getattr(AsyncCalls(client, session), call)(*args)
            except ApiError as err:
                return err

    return blocking(), asyncio.run(over_aiohttp())


def same_error(a: Any, b: Any) -> None:
    assert isinstance(a, ApiError) and isinstance(b, ApiError), (a, b)
    assert (type(a), a.message, a.code, a.retryable) == (type(b), b.message, b.code, b.retryable)
    if isinstance(a, TransportError):
        assert isinstance(b, TransportError) and a.sent == b.sent


def outputs_route(server: Server, handler: Callable[..., Any]) -> None:
    server.routes[("POST", "/task/openapi/outputs")] = handler


def test_an_answer_reads_the_same(server: Server) -> None:
    files = [{"fileUrl": server.url + "/f.png", "fileType": "png", "taskCostTime": "3"}]
    outputs_route(server, answer(files))
    with Client(KEY, server.url) as client:
        sync, aio = both(client, "outputs", TASK_ID)
    assert sync == aio and aio.succeeded and aio.outputs[0].file_url == files[0]["fileUrl"]
    sent = [s for s in server.seen if s.path == "/task/openapi/outputs"]
    assert len(sent) == 2 and all(s.headers["Authorization"] == f"Bearer {KEY}" for s in sent)


def test_a_create_sends_the_same_body(server: Server) -> None:
    created = {"taskId": TASK_ID, "taskStatus": "QUEUED", "netWssUrl": None, "clientId": "c"}
    server.routes[("POST", "/task/openapi/create")] = answer(created)
    entries = [{"nodeId": 3, "fieldName": "seed", "fieldValue": 7}]
    with Client(KEY, server.url) as client:
        sync, aio = both(client, "create_task", "1904136902449209346", entries)
    assert sync == aio and aio.task_id == TASK_ID
    bodies = [s.body for s in server.seen if s.path == "/task/openapi/create"]
    assert len(bodies) == 2
    assert json.loads(bodies[0]) == json.loads(bodies[1])


@pytest.mark.parametrize(
    "handler",
    [
        pytest.param(lambda s: raw("upstream broke", 502, "text/plain"), id="HTTP 502"),
        pytest.param(lambda s: raw("<html>busy</html>", 200), id="not JSON"),
        pytest.param(lambda s: raw('{"msg": "no code"}', 200, "application/json"), id="no code"),
        pytest.param(lambda s: answer(None, 1011, f"key {KEY} refused"), id="key echoed"),
        pytest.param(
            lambda s: stream(head=b'{"code": 0, "x": "', chunk=b"a" * 65536), id="endless"
        ),
        pytest.param(lambda s: redirect("http://example.invalid/elsewhere"), id="foreign redirect"),
        pytest.param(lambda s: redirect(s.url + "/task/openapi/outputs", 302), id="302 at home"),
        pytest.param(lambda s: silent(), id="silent"),
    ],
)
def test_a_bad_answer_is_the_same_error(server: Server, handler: Callable[[Server], Any]) -> None:
    outputs_route(server, handler(server))
    with Client(KEY, server.url, timeout=1.0) as client:
        sync, aio = both(client, "outputs", TASK_ID)
    same_error(sync, aio)
    assert KEY not in aio.message


def test_a_same_origin_307_is_followed(server: Server) -> None:
    server.routes[("POST", "/moved")] = answer([{"fileUrl": "http://x/a.png", "fileType": "png"}])
    outputs_route(server, redirect(server.url + "/moved", 307))
    with Client(KEY, server.url) as client:
        sync, aio = both(client, "outputs", TASK_ID)
    assert sync == aio and aio.succeeded


def test_a_dropped_answer_may_have_reached_the_server(server: Server) -> None:
    async def hang_up(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        await asyncio.sleep(0.1)
        return web.Response()

    outputs_route(server, hang_up)
    with Client(KEY, server.url) as client:
        client.answered = True  # not the first request: a drop, not a wrong address
        sync, aio = both(client, "outputs", TASK_ID)
    assert isinstance(sync, TransportError) and isinstance(aio, TransportError)
    assert sync.sent and aio.sent and sync.retryable and aio.retryable


def test_nobody_listening_is_unreachable_the_same_way(unused_port: int) -> None:
    with Client(KEY, f"http://127.0.0.1:{unused_port}") as client:
        sync, aio = both(client, "outputs", TASK_ID)
    same_error(sync, aio)
    assert not aio.sent and "Connection refused" in aio.message


def test_a_server_that_accepts_no_connection_in_time_is_unreachable_the_same_way() -> None:
    # A listening socket whose backlog is full: the kernel drops further SYNs, so a connect
    # hangs until the connect timeout (5 s). Nothing was sent: no "may have been created
    # twice", and the first request of a command fails as a wrong address does.
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        port = full.getsockname()[1]
        waiting = socket.socket()
        waiting.connect(("127.0.0.1", port))  # fills the backlog
        with waiting, Client(KEY, f"http://127.0.0.1:{port}") as client:
            sync, aio = both(client, "outputs", TASK_ID)
    same_error(sync, aio)
    assert not aio.sent and "no connection within the connect timeout" in aio.message


def test_a_run_goes_through_the_proxy_the_environment_names(
    emulator: Emulator, tmp_path: Path, unused_port: int
) -> None:
    # Nothing listens at the base URL: the run succeeds only if every request, the creates
    # and polls over aiohttp included, goes through HTTP_PROXY (here the emulator itself).
    path = write_sweep(tmp_path, subjects=("cat",))
    env = {**os.environ, "HTTP_PROXY": emulator.url, "RH_API_KEY": KEY, "NO_PROXY": ""}
    env["PYTHONPATH"] = str(ROOT)
    base = f"http://127.0.0.1:{unused_port}"
    done = subprocess.run(
        [sys.executable, "-m", "rhflow", "run", str(path), "--base-url", base, "--no-websocket"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert emulator.stats()["tasks"]["created"] == 2


def test_the_reference_example_runs_against_the_emulator(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    page = (ROOT / "docs" / "reference" / "client.md").read_text(encoding="utf-8")
    section = page.split("## The per-task calls on an event loop", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.setenv("RH_BASE_URL", emulator.url)
    monkeypatch.setenv("RH_API_KEY", KEY)
    exec(compile(example, "docs/reference/client.md", "exec"), {})
    printed = capsys.readouterr().out
    assert printed.startswith("['" + emulator.url) and ".png" in printed


def download_both(client: Client, url: str, folder: Path) -> tuple[Any, Any]:
    """``download`` of the blocking client, and the same over aiohttp: each result or error."""
    a, b = folder / "sync" / "out.png", folder / "aio" / "out.png"

    def blocking() -> Any:
        try:
            return client.download(url, a)
        except ApiError as err:
            return err

    async def over_aiohttp() -> Any:
        async with new_session() as session:
            try:
                return await AsyncCalls(client, session).download(url, b)
            except ApiError as err:
                return err

    return blocking(), asyncio.run(over_aiohttp())


def test_a_file_downloads_the_same(server: Server, tmp_path: Path) -> None:
    server.routes[("GET", "/f.png")] = raw(PNG * 300, content_type="image/png")
    with Client(KEY, server.url) as client:
        sync, aio = download_both(client, server.url + "/f.png", tmp_path)
    assert (sync.sha256, sync.bytes) == (aio.sha256, aio.bytes) and aio.bytes == len(PNG) * 300
    assert aio.path.read_bytes() == sync.path.read_bytes()
    assert [s.headers.get("Authorization") for s in server.seen] == [None, None]  # no key
    assert sorted(p.name for p in aio.path.parent.iterdir()) == ["out.png"]  # no leftovers


def test_a_large_file_is_written_out_in_pieces(server: Server, tmp_path: Path) -> None:
    big = bytes(range(256)) * (3 * SPILL // 256 + 7)
    server.routes[("GET", "/big.bin")] = raw(big, content_type="application/octet-stream")
    with Client(KEY, server.url) as client:
        sync, aio = download_both(client, server.url + "/big.bin", tmp_path)
    assert aio.bytes == sync.bytes == len(big) and aio.path.read_bytes() == big


@pytest.mark.parametrize(
    ("limits", "handler"),
    [
        pytest.param({}, lambda s: raw("gone", 404, "text/plain"), id="HTTP 404"),
        pytest.param({}, lambda s: redirect("file:///etc/passwd"), id="redirect to file"),
        pytest.param({}, lambda s: redirect(s.url + "/f.png"), id="redirect loop"),
        pytest.param(
            {"max_output_bytes": 1000}, lambda s: stream(length=5000), id="announced too large"
        ),
        pytest.param({"max_output_bytes": 100_000}, lambda s: stream(), id="endless"),
        pytest.param(
            {"min_download_rate": MinRate(1024, 0.5)},
            lambda s: stall(PNG[:100], 5000),
            id="stalled",
        ),
        pytest.param({"download_timeout": 0.5}, lambda s: silent(), id="no headers"),
    ],
)
def test_a_bad_file_is_the_same_error(
    server: Server, tmp_path: Path, limits: dict[str, Any], handler: Callable[[Server], Any]
) -> None:
    server.routes[("GET", "/f.png")] = handler(server)
    with Client(KEY, server.url, **limits) as client:
        sync, aio = download_both(client, server.url + "/f.png", tmp_path)
    same_error(sync, aio)
    assert not (tmp_path / "aio" / "out.png").exists()
    assert [p.name for p in (tmp_path / "aio").iterdir()] == []  # nothing half-written


def test_a_file_cut_short_may_be_fetched_again(server: Server, tmp_path: Path) -> None:
    async def cut(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": "5000"})
        await resp.prepare(request)
        await resp.write(PNG[:100])
        assert request.transport is not None
        request.transport.close()
        return resp

    server.routes[("GET", "/f.png")] = cut
    with Client(KEY, server.url) as client:
        sync, aio = download_both(client, server.url + "/f.png", tmp_path)
    assert isinstance(sync, TransportError) and isinstance(aio, TransportError)
    assert sync.retryable and aio.retryable
    assert aio.message.startswith(f"downloading {server.url}/f.png")


def test_more_than_100_header_lines_are_refused_the_same_way(
    server: Server, tmp_path: Path
) -> None:
    server.header_delay = 0.001
    with Client(KEY, server.url) as client:
        sync, aio = download_both(client, server.raw_url + "/slow.png", tmp_path)
    same_error(sync, aio)
    assert "got more than 100 headers" in aio.message

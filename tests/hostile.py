"""A hostile RunningHub server on loopback, for the hostile-server and secrets suites.

``Server`` is a small aiohttp app in a thread of its own that records every request it gets;
``Hostile`` is one standing for the API (it speaks enough of create and outputs for
``rhflow run`` to reach a download) and another standing for "another host", which must
never see the key. Each scenario swaps one route for a hostile answer:

    with Hostile() as h:
        h.outputs = [{"fileUrl": h.api.url + "/files/endless", "fileType": "png"}]
        ... rhflow run against h.api.url ...
        assert not h.leaks(KEY)

Run as a script, it measures every scenario of ``SCENARIOS`` against a ``rhflow`` on
PYTHONPATH through the CLI (``python tests/hostile.py [--caps] [--hang S]``): a scenario
that runs past ``--hang`` seconds (default ``HANG``) hung; a file changed, added or removed
beside the output folder is a write outside; a request carrying the key at the other host
is a leak.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

TASK_ID = "1900000000000000001"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def carries(self, secret: str) -> bool:
        text = json.dumps(self.headers) + self.path
        return secret in text or secret.encode() in self.body


class Server:
    """An aiohttp app on 127.0.0.1:0 in a thread; ``routes[(method, path)]`` answer, every
    request is recorded in ``seen``; ``raw_url`` is a plain TCP server that drips headers."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Handler] = {}
        self.seen: list[Seen] = []
        self.url = self.raw_url = ""
        self.header_delay = 0.1
        self.raw_seen = 0  # connections the header drip got
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._stopping = False

    def start(self) -> Server:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self._raw = await asyncio.start_server(self._drip_headers, "127.0.0.1", 0)
        self.raw_url = f"http://127.0.0.1:{self._raw.sockets[0].getsockname()[1]}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(Seen(request.method, request.path_qs, dict(request.headers), body))
        handler = self.routes.get((request.method, request.raw_path.split("?")[0]))
        if handler is None:
            return web.json_response({"code": 412, "msg": "TOKEN_INVALID", "data": None})
        return await handler(request)

    async def _drip_headers(self, reader: asyncio.StreamReader, writer: Any) -> None:
        """Header lines, one every ``header_delay`` seconds; for a path with ``line`` in it,
        one header line that never ends, a byte at a time."""
        self.raw_seen += 1
        with contextlib.suppress(OSError, asyncio.CancelledError):
            head = await reader.readuntil(b"\r\n\r\n")
            one_line = b"line" in head.split(b"\r\n", 1)[0]
            writer.write(b"HTTP/1.1 200 OK\r\n" + (b"X-Slow: " if one_line else b""))
            for n in range(100000):
                if self._stopping:
                    break
                writer.write(b"a" if one_line else f"X-Slow-{n}: 1\r\n".encode())
                await writer.drain()
                await asyncio.sleep(self.header_delay)
        writer.close()

    def stop(self) -> None:
        self._stopping = True

        async def shutdown() -> None:
            self._raw.close()
            await asyncio.sleep(0.2)  # the header drips see _stopping and end
            await self._runner.cleanup()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


# -- answers -----------------------------------------------------------------------------------


def answer(data: Any, code: int = 0, msg: str = "success") -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return web.json_response({"code": code, "msg": msg, "data": data})

    return handle


def raw(body: bytes | str, status: int = 200, content_type: str = "text/html") -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        data = body.encode() if isinstance(body, str) else body
        return web.Response(body=data, status=status, content_type=content_type)

    return handle


def websocket(frames: list[dict[str, Any]]) -> Handler:
    """A WebSocket that sends ``frames`` (ComfyUI messages) and closes."""

    async def handle(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        for frame in frames:
            await ws.send_json(frame)
        await ws.close()
        return ws

    return handle


def redirect(location: str, status: int = 302) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers={"Location": location})

    return handle


def stream(
    head: bytes = PNG[:8], chunk: bytes = b"\0" * 65536, delay: float = 0.0, length: int = 0
) -> Handler:
    """An answer that never ends: ``head``, then ``chunk`` every ``delay`` seconds (with a
    Content-Length of ``length`` when given)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(length)} if length else None)
        resp.content_type = "image/png"
        with contextlib.suppress(OSError, RuntimeError):
            await resp.prepare(request)
            await resp.write(head)
            for _ in range(10**7):
                await resp.write(chunk)
                await asyncio.sleep(delay)
        return resp

    return handle


def trickle(data: bytes, piece: int, delay: float) -> Handler:
    """``data`` (with its Content-Length), ``piece`` bytes every ``delay`` seconds."""

    async def handle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(len(data))})
        resp.content_type = "image/png"
        with contextlib.suppress(OSError, RuntimeError):
            await resp.prepare(request)
            for start in range(0, len(data), piece):
                await resp.write(data[start : start + piece])
                await asyncio.sleep(delay)
            await resp.write_eof()
        return resp

    return handle


def stall(head: bytes, length: int) -> Handler:
    """``head`` of a file announced as ``length`` bytes, then nothing (the connection open)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(length)})
        resp.content_type = "image/png"
        with contextlib.suppress(OSError, RuntimeError):
            await resp.prepare(request)
            await resp.write(head)
            await asyncio.sleep(3600)
        return resp

    return handle


def silent() -> Handler:
    """An answer that never comes: not even its headers (the connection stays open)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(3600)
        return web.Response()

    return handle


class Hostile:
    """The API server and another host. ``outputs`` is the outputs list the API hands out
    (``{api}``/``{other}``/``{raw}`` in a fileUrl stand for the servers' URLs); ``create``
    is the create answer's data; any route can be replaced in ``api.routes``."""

    def __init__(self) -> None:
        self.api = Server()
        self.other = Server()
        self.create: dict[str, Any] = {
            "taskId": TASK_ID,
            "taskStatus": "RUNNING",
            "netWssUrl": None,
            "clientId": "c0ffee",
            "promptTips": json.dumps({"result": True, "node_errors": {}}),
        }
        self.outputs: list[dict[str, Any]] = [{"fileUrl": "{api}/files/ok.png", "fileType": "png"}]

    def __enter__(self) -> Hostile:
        self.api.start()
        self.other.start()
        for server in (self.api, self.other):
            server.routes[("GET", "/files/ok.png")] = raw(PNG, content_type="image/png")
        self.api.routes[("POST", "/task/openapi/create")] = self._create
        self.api.routes[("POST", "/task/openapi/outputs")] = self._outputs
        self.api.routes[("POST", "/task/openapi/cancel")] = answer(None)
        return self

    def __exit__(self, *exc: object) -> None:
        self.api.stop()
        self.other.stop()

    def url(self, text: str) -> str:
        return text.format(api=self.api.url, other=self.other.url, raw=self.api.raw_url)

    async def _create(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"code": 0, "msg": "success", "data": self.create})

    async def _outputs(self, request: web.Request) -> web.StreamResponse:
        common = {"taskCostTime": "1", "consumeCoins": "1", "nodeId": "9"}
        items = [{**common, **item} for item in self.outputs]
        for item in items:
            if isinstance(item.get("fileUrl"), str):
                item["fileUrl"] = self.url(item["fileUrl"])
        return web.json_response({"code": 0, "msg": "success", "data": items})

    def leaks(self, secret: str) -> list[Seen]:
        """Requests that reached the other host carrying ``secret``."""
        return [seen for seen in self.other.seen if seen.carries(secret)]


# -- scenarios ---------------------------------------------------------------------------------

PIPELINE = """\
version: 1
name: hostile
output: out
steps:
  gen:
    workflow: "1904136902449209346"
    outputs: "{template}"
    retries: 0
"""


def victim_climb(output_dir: Path, victim: Path) -> str:
    """A fileType that turns ``<output>/.rhflow/partial/<id>-0.<ext>`` into ``victim``."""
    return "/" + "../" * (len(output_dir.resolve().parts) + 3) + str(victim.resolve()).lstrip("/")


def setup(name: str, h: Hostile, output_dir: Path, victim: Path) -> str:
    """Make ``h`` play scenario ``name``; the outputs template to run it with."""
    png = "{api}/files/ok.png"
    template = "img-{{ index }}.png"
    if name == "fileType climbs to a file beside the folder":
        h.outputs = [{"fileUrl": png, "fileType": victim_climb(output_dir, victim)}]
    elif name == "fileType absolute":
        h.outputs = [{"fileUrl": png, "fileType": str(victim.resolve())}]
    elif name == "fileType with NUL":
        h.outputs = [{"fileUrl": png, "fileType": "png\0/../../x"}]
    elif name == "fileType over-long":
        h.outputs = [{"fileUrl": png, "fileType": "p" * 5000}]
    elif name == "fileUrl name climbs, no fileType":
        h.outputs = [{"fileUrl": "{api}/files/x.png%2F..%2F..%2F..%2Fvictim"}]
        h.api.routes[("GET", "/files/x.png%2F..%2F..%2F..%2Fvictim")] = raw(PNG)
    elif name == "nodeId climbs":
        h.outputs = [{"fileUrl": png, "fileType": "png", "nodeId": "../../../victim"}]
        template = "{{ node_id }}.{{ ext }}"
    elif name == "fileUrl file://":
        h.outputs = [{"fileUrl": f"file://{victim.resolve()}", "fileType": "png"}]
    elif name == "fileUrl on another host":
        h.outputs = [{"fileUrl": "{other}/files/ok.png", "fileType": "png"}]
    elif name == "websocket on another host":
        h.create = {**h.create, "netWssUrl": h.url("{other}/ws/c_instance?taskId=1")}
    elif name == "download redirect loop":
        h.outputs = [{"fileUrl": "{api}/files/loop", "fileType": "png"}]
        h.api.routes[("GET", "/files/loop")] = redirect("/files/loop")
    elif name == "download redirected to file://":
        h.outputs = [{"fileUrl": "{api}/files/to-file", "fileType": "png"}]
        h.api.routes[("GET", "/files/to-file")] = redirect(f"file://{victim.resolve()}")
    elif name == "download redirected to another host":
        h.outputs = [{"fileUrl": "{api}/files/to-other", "fileType": "png"}]
        h.api.routes[("GET", "/files/to-other")] = redirect(h.url("{other}/files/ok.png"))
    elif name == "create 307 to another host":
        h.api.routes[("POST", "/task/openapi/create")] = redirect(
            h.url("{other}/task/openapi/create"), 307
        )
    elif name == "outputs 308 to another host":
        h.api.routes[("POST", "/task/openapi/outputs")] = redirect(
            h.url("{other}/task/openapi/outputs"), 308
        )
    elif name == "huge Content-Length":
        h.outputs = [{"fileUrl": "{api}/files/huge", "fileType": "png"}]
        h.api.routes[("GET", "/files/huge")] = stream(length=10**13, delay=0.05)
    elif name == "endless file":
        h.outputs = [{"fileUrl": "{api}/files/endless", "fileType": "png"}]
        h.api.routes[("GET", "/files/endless")] = stream()
    elif name == "slow drip file":
        h.outputs = [{"fileUrl": "{api}/files/drip", "fileType": "png"}]
        h.api.routes[("GET", "/files/drip")] = stream(chunk=b"\0", delay=0.05)
    elif name == "slow headers file":
        h.outputs = [{"fileUrl": "{raw}/slow.png", "fileType": "png"}]
    elif name == "slow header line file":
        h.outputs = [{"fileUrl": "{raw}/slow-line.png", "fileType": "png"}]
    elif name == "endless API answer":
        h.api.routes[("POST", "/task/openapi/outputs")] = stream(head=b'{"code": 0, "x": "')
    elif name == "slow drip API answer":
        h.api.routes[("POST", "/task/openapi/outputs")] = stream(
            head=b'{"code": 0, "x": "', chunk=b"a", delay=0.05
        )
    elif name == "silent API answer":
        h.api.routes[("POST", "/task/openapi/outputs")] = silent()
    elif name == "silent create answer":
        h.api.routes[("POST", "/task/openapi/create")] = silent()
    elif name == "invalid JSON":
        h.api.routes[("POST", "/task/openapi/outputs")] = raw('{"code": 0, "data": [', 200)
    elif name == "HTML with 200":
        h.api.routes[("POST", "/task/openapi/outputs")] = raw("<html><body>OK</body></html>")
    elif name == "taskId a float":
        h.create = {**h.create, "taskId": 1.9041369024492093e18}
    elif name == "taskId huge":
        h.create = {**h.create, "taskId": int("9" * 400)}
    elif name == "20,000 outputs":
        h.outputs = [{"fileUrl": png, "fileType": "png"}] * 20000
    elif name == "1,000 outputs":  # as many as --max-outputs lets a task have: all downloaded
        h.outputs = [{"fileUrl": png, "fileType": "png"}] * 1000
    else:
        raise KeyError(name)
    return template


#: What a server can drag out: ``python -m benchmarks.slow_servers`` times these with the
#: default settings.
SLOW = (
    "huge Content-Length",
    "endless file",
    "slow drip file",
    "slow headers file",
    "slow header line file",
    "endless API answer",
    "slow drip API answer",
    "silent API answer",
    "silent create answer",
    "20,000 outputs",
)
SCENARIOS = (
    "fileType climbs to a file beside the folder",
    "fileType absolute",
    "fileType with NUL",
    "fileType over-long",
    "fileUrl name climbs, no fileType",
    "nodeId climbs",
    "fileUrl file://",
    "fileUrl on another host",
    "websocket on another host",
    "download redirect loop",
    "download redirected to file://",
    "download redirected to another host",
    "create 307 to another host",
    "outputs 308 to another host",
    "invalid JSON",
    "HTML with 200",
    "taskId a float",
    "taskId huge",
    *SLOW,
)


def snapshot(folder: Path, skip: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` except those under ``skip``."""
    found = {}
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_relative_to(skip):
            found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


# -- measuring through the CLI -----------------------------------------------------------------

HANG = 30.0
KEY = "hostile-test-key-0123456789abcdef"


def measure(name: str, caps: list[str], hang: float = HANG) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, Hostile() as h:
        root = Path(tmp)
        out, victim = root / "out", root / "victim"
        victim.write_bytes(b"precious")
        template = setup(name, h, out, victim)
        (root / "p.yaml").write_text(PIPELINE.format(template=template))
        before = snapshot(root, out)
        env = {**os.environ, "RH_API_KEY": KEY, "RH_BASE_URL": h.api.url}
        started = time.monotonic()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "rhflow", "run", "p.yaml", "-q", *caps],
                cwd=root,
                env=env,
                capture_output=True,
                text=True,
                timeout=hang,
            )
            code, text = done.returncode, (done.stdout + done.stderr).strip()
        except subprocess.TimeoutExpired:
            code, text = None, "hung"
        return {
            "scenario": name,
            "seconds": round(time.monotonic() - started, 1),
            "exit": code,
            "outside": sorted(set(snapshot(root, out).items()) ^ set(before.items())),
            "leaks": len(h.leaks(KEY)),
            "traceback": "Traceback" in text,
            "said": text.splitlines()[-3:] if text else [],
        }


def main() -> None:
    caps = ["--download-timeout", "3", "--max-output-size", "1MB"] if "--caps" in sys.argv else []
    hang = float(sys.argv[sys.argv.index("--hang") + 1]) if "--hang" in sys.argv else HANG
    rows = [measure(name, caps, hang) for name in SCENARIOS]
    for row in rows:
        print(json.dumps(row))
    hangs = sum(r["exit"] is None for r in rows)
    slowest = max(rows, key=lambda r: r["seconds"])
    outside = sum(bool(r["outside"]) for r in rows)
    leaks = sum(r["leaks"] > 0 for r in rows)
    tracebacks = sum(r["traceback"] for r in rows)
    print(
        f"{len(rows)} scenarios: {hangs} hung (> {hang:g} s), {outside} wrote outside the "
        f"output folder (changed, added or removed a file), {leaks} sent the key to another "
        f"host, {tracebacks} ended in a traceback; slowest {slowest['seconds']} s "
        f"({slowest['scenario']})"
    )


if __name__ == "__main__":
    main()

"""Running the emulator: in a background thread (``Emulator``) or in the foreground (``serve``)."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from aiohttp import web

from rhflow.emulator.app import make_app
from rhflow.emulator.config import EmulatorConfig
from rhflow.emulator.state import STATE, State
from rhflow.errors import UsageError

START_TIMEOUT = 15.0


async def _listen(config: EmulatorConfig) -> tuple[web.AppRunner, State]:
    """Start serving ``config``; return the runner and the state, bound to the real port."""
    app = make_app(config)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise UsageError(
            f"the emulator cannot listen on {config.host}:{config.port}: {exc.strerror or exc}; "
            "pick another --port (0 chooses a free one)"
        ) from exc
    host, port = _bound_address(runner, config)
    app[STATE].bind(host, port)
    return runner, app[STATE]


def _bound_address(runner: web.AppRunner, config: EmulatorConfig) -> tuple[str, int]:
    for address in runner.addresses:
        if isinstance(address, tuple):
            return config.host, int(address[1])
    return config.host, config.port


class Emulator:
    """A RunningHub emulator on its own event loop in a daemon thread.

    ``with Emulator(config) as emu: requests.post(emu.url + "/task/openapi/create", ...)``
    """

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._state: State | None = None
        self._stopped: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        where = self._state.base_url if self._state else "not started"
        return f"Emulator({where})"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, the base URL clients use."""
        if self._state is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return self._state.base_url

    def start(self) -> Emulator:
        """Start serving; returns once the port is listening (errors are raised here)."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name="rhflow-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise RuntimeError("the emulator did not start within 15 seconds")
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        try:
            runner, self._state = await _listen(self.config)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._stopped = asyncio.Event()
        self._ready.set()
        await self._stopped.wait()
        await runner.cleanup()

    def stop(self) -> None:
        """Stop serving and wait for the thread to end (safe to call twice)."""
        if self._thread is None or self._loop is None or self._stopped is None:
            return
        self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(timeout=10)
        self._thread = None

    def stats(self) -> dict[str, Any]:
        """The same dict as ``GET /emulator/stats``."""
        if self._thread is None or self._loop is None or self._state is None:
            raise RuntimeError("the emulator is not running; call start() first")
        state = self._state

        async def collect() -> dict[str, Any]:
            return state.stats()

        return asyncio.run_coroutine_threadsafe(collect(), self._loop).result(timeout=10)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve(config: EmulatorConfig, *, ready: Callable[[str], None] | None = None) -> None:
    """Serve in the foreground until SIGINT or SIGTERM; ``ready(url)`` once listening."""
    asyncio.run(_serve(config, ready))


async def _serve(config: EmulatorConfig, ready: Callable[[str], None] | None) -> None:
    runner, state = await _listen(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        if ready is not None:
            ready(state.base_url)
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await runner.cleanup()

"""Making output files off the event loop: a worker thread renders, a cache keyed by content.

A task's files are known as soon as it starts running (they depend on its graph and the seed
only), so they are rendered then, in a worker thread, and are ready when the task's clock says
it ended; fifty tasks ending together cost the loop nothing. Rendered bytes are kept in a cache
keyed by the recipe, bounded in bytes; a file pushed out is rendered again when asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from rhflow.emulator.records import OutputFile, Recipe

CACHE_BYTES = 96 * 1024 * 1024
WORKERS = 2


class Renders:
    """Renders output files in worker threads and keeps the bytes, most recently used first."""

    def __init__(self, limit: int = CACHE_BYTES) -> None:
        self.limit = limit
        self.size = 0
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="rhflow-emulator-render")
        self._futures: dict[Recipe, Future[bytes]] = {}
        self._done: OrderedDict[Recipe, bytes] = OrderedDict()
        self.rendered = 0

    def prepare(self, files: Iterable[OutputFile]) -> None:
        """Start rendering ``files`` now (on the loop's thread; returns at once)."""
        for item in files:
            self._future(item)

    async def data(self, item: OutputFile) -> bytes:
        """The bytes of ``item``, rendered in a worker if they are not cached."""
        cached = self._done.get(item.recipe)
        if cached is not None:
            self._done.move_to_end(item.recipe)
            return cached
        return await asyncio.wrap_future(self._future(item))

    def _future(self, item: OutputFile) -> Future[bytes]:
        recipe = item.recipe
        if recipe in self._done:
            done: Future[bytes] = Future()
            done.set_result(self._done[recipe])
            return done
        future = self._futures.get(recipe)
        if future is None:
            future = self._pool.submit(item.render)
            self._futures[recipe] = future
            loop = asyncio.get_running_loop()
            future.add_done_callback(lambda f: _call_soon(loop, self._store, recipe, f))
        return future

    def _store(self, recipe: Recipe, future: Future[bytes]) -> None:
        self._futures.pop(recipe, None)
        if future.cancelled() or future.exception() is not None:
            return
        data = future.result()
        self.rendered += 1
        self._done[recipe] = data
        self.size += len(data)
        while self.size > self.limit and len(self._done) > 1:
            _, dropped = self._done.popitem(last=False)
            self.size -= len(dropped)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _call_soon(loop: asyncio.AbstractEventLoop, *call: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the emulator stopped while a file rendered
        loop.call_soon_threadsafe(*call)

"""The HTTP plumbing under :mod:`rhflow.api.client`: deadlines, size caps, where requests may go.

A hostile or broken server can drip an answer a byte at a time (each read well inside the
read timeout), send headers forever, promise or send an endless body, or redirect a request
that carries the API key to another host. Three tools keep every request bounded:

- ``deadline(seconds)``: a block in which every connection the session uses is shut down when
  the time is up, whatever phase it is in (connecting, sending, waiting for headers, reading
  the body). It works through the connection classes of the session ``new_session`` builds; a
  session passed in from outside is only checked between chunks, by ``read_capped``.
- ``read_capped(resp, limit, ...)``: the body of a streamed answer, refusing a Content-Length
  or a body over ``limit`` bytes.
- ``same_origin`` / ``check_file_url``: API calls follow no redirect to another origin (the key
  would go with the body), and output files are fetched only over http(s).

Errors are plain values here (``Expired``, ``TooLarge``, ``NotAllowed``); the client turns
them into :class:`rhflow.errors.ApiError` subclasses with the request named.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection

POOL_SIZE = 32
CHUNK = 65536


class Expired(Exception):
    """The deadline of a request passed before its answer was complete."""


class TooLarge(Exception):
    """An answer announced or sent more bytes than allowed."""

    def __init__(self, limit: int, announced: int | None = None) -> None:
        self.limit = limit
        self.announced = announced
        super().__init__(f"more than {limit} bytes")


class NotAllowed(Exception):
    """A URL the client must not fetch (another scheme than http(s), another origin)."""


# -- deadlines ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MinRate:
    """A body must bring at least ``bytes`` in every ``seconds`` once its headers came: a
    download slower than that is stalled, whatever its overall deadline."""

    bytes: int
    seconds: float

    def __str__(self) -> str:
        return f"{size_text(self.bytes)} every {self.seconds:g} s"


class _Watch:
    """The connections used inside one ``deadline`` block; shut down when it expires.

    It expires at ``ends``; before the headers of the answer came (``begun``), also at
    ``headers_ends`` (``headers`` seconds from the start, or ``answer`` seconds from the end
    of sending the request, whichever comes first); after, when a ``min_rate`` window brings
    fewer bytes than it asks (``received`` counts the body as it arrives). ``reason`` says
    which: "deadline", "headers" or "stalled"."""

    def __init__(
        self,
        seconds: float,
        headers: float | None = None,
        min_rate: MinRate | None = None,
        answer: float | None = None,
    ) -> None:
        now = time.monotonic()
        self.ends = now + seconds
        self.headers_ends = None if headers is None else now + headers
        self.answer = answer
        self.min_rate = min_rate
        self.received = 0  # body bytes so far (written by the reading thread)
        self.window_bytes = 0  # what the last window brought, once stalled
        self.reason: str | None = None
        self.expired = False
        self.done = False  # the block ended: nothing to shut down any more
        self._begun = False
        self._mark = 0
        self._window_ends = float("inf")
        self._lock = threading.Lock()
        self._connections: list[HTTPConnection] = []

    def attach(self, conn: HTTPConnection) -> None:
        with self._lock:
            self._connections.append(conn)
            if self.expired:
                _shut(conn)

    def sent(self) -> None:
        """The request is sent (a large upload may take long): its answer has ``answer``
        seconds from now."""
        if self.answer is None or self._begun:
            return
        by = time.monotonic() + self.answer
        if self.headers_ends is None or by < self.headers_ends:
            self.headers_ends = by
            _watchdog.add(self)

    def begun(self) -> None:
        """The headers of the answer came: from now on the body's rate counts."""
        self._begun = True
        if self.min_rate is not None:
            self._mark = self.received
            self._window_ends = time.monotonic() + self.min_rate.seconds
            _watchdog.add(self)  # its first window may end before the time it waits for

    def due(self) -> float:
        """When the watchdog must look at this block next."""
        if not self._begun and self.headers_ends is not None:
            return min(self.ends, self.headers_ends)
        return min(self.ends, self._window_ends)

    def tick(self, now: float) -> float | None:
        """The watchdog's look at ``now``: expire the block, or say when to look again."""
        reason = None
        if now >= self.ends:
            reason = "deadline"
        elif not self._begun and self.headers_ends is not None and now >= self.headers_ends:
            reason = "headers"
        elif self._begun and self.min_rate is not None and now >= self._window_ends:
            got = self.received - self._mark
            if got < self.min_rate.bytes:
                self.window_bytes, reason = got, "stalled"
            else:
                self._mark, self._window_ends = self.received, now + self.min_rate.seconds
        if reason is None:
            return self.due()
        self.expire(reason)
        return None

    def check(self) -> None:
        """Raise Expired once the deadline has passed (between chunks of a body)."""
        if self.expired or time.monotonic() >= self.ends:
            if not self.expired:
                self.reason = "deadline"
            self.expired = True
            raise Expired()

    def expire(self, reason: str = "deadline") -> None:
        with self._lock:
            if self.done or self.expired:
                return
            self.reason = reason
            self.expired = True
            for conn in self._connections:
                _shut(conn)


def _shut(conn: HTTPConnection) -> None:
    sock = getattr(conn, "sock", None)
    if sock is None:
        return
    # The plain socket's shutdown, also under TLS: it wakes a blocked reader at once.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread that expires every deadline of the process, earliest first.

    A thread (a ``threading.Timer``) per request cost more CPU than the request itself at a
    few hundred requests a second; here a block costs a heap push, and the thread sleeps
    until the earliest deadline. Ended blocks stay in the heap until their time comes up. A
    block with a headers deadline or a minimum rate is looked at again (``_Watch.tick``) at
    each of its times, pushed back with the next one.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Watch]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def add(self, watch: _Watch) -> None:
        with self._cond:
            heapq.heappush(self._heap, (watch.due(), next(self._order), watch))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="rhflow-deadlines", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is watch:
                self._cond.notify()  # earlier than what the thread sleeps until

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                ends, _, watch = self._heap[0]
                left = ends - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                heapq.heappop(self._heap)
            again = watch.tick(time.monotonic())
            if again is not None:
                with self._cond:
                    heapq.heappush(self._heap, (again, next(self._order), watch))


_watchdog = _Watchdog()
_local = threading.local()


@contextmanager
def deadline(
    seconds: float,
    *,
    headers: float | None = None,
    min_rate: MinRate | None = None,
    answer: float | None = None,
    live: set[_Watch] | None = None,
) -> Iterator[_Watch]:
    """Every request of this thread inside the block ends by ``seconds`` from now; with
    ``headers``, its answer's headers come within that many seconds (call ``begun`` when
    they did); with ``answer``, within that many seconds of the request being sent; with
    ``min_rate``, its body then comes at least that fast. The block is in ``live`` while it
    lasts, for ``abort`` to end it sooner."""
    watch = _Watch(seconds, headers, min_rate, answer)
    outer = getattr(_local, "watch", None)
    _local.watch = watch
    _watchdog.add(watch)
    if live is not None:
        live.add(watch)
    try:
        yield watch
    finally:
        with watch._lock:
            watch.done = True
        _local.watch = outer
        if live is not None:
            live.discard(watch)


def abort(live: set[_Watch]) -> None:
    """End now every block of ``live`` (their connections shut, their requests raising as at
    a deadline, with the reason "stopped"): the caller gave up waiting for them."""
    for watch in list(live):
        watch.expire("stopped")


def _attach(conn: HTTPConnection) -> None:
    watch = getattr(_local, "watch", None)
    if watch is not None:
        watch.attach(conn)


def _sent() -> None:
    watch = getattr(_local, "watch", None)
    if watch is not None:
        watch.sent()


class _WatchedHTTPConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach(self)
        super().request(*args, **kwargs)

    def getresponse(self) -> Any:
        _sent()
        return super().getresponse()


class _WatchedHTTPSConnection(HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach(self)
        super().request(*args, **kwargs)

    def getresponse(self) -> Any:
        _sent()
        return super().getresponse()


class _WatchedPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS = {"http": _WatchedPool, "https": _WatchedHTTPSPool}


class _WatchedAdapter(HTTPAdapter):
    """An adapter whose connections obey the ``deadline`` of the thread that uses them."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = dict(_POOLS)
        return manager


def new_session() -> requests.Session:
    """A session whose requests can be bounded by ``deadline``; no retries of its own."""
    session = requests.Session()
    adapter = _WatchedAdapter(pool_connections=POOL_SIZE, pool_maxsize=POOL_SIZE, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


# -- size caps ---------------------------------------------------------------------------------


def announced_length(resp: requests.Response) -> int | None:
    """The Content-Length of a plain (not content-encoded) answer, or None."""
    value = resp.headers.get("Content-Length")
    if value is None or resp.headers.get("Content-Encoding"):
        return None
    try:
        return int(value)
    except ValueError:
        return None


def chunks(
    resp: requests.Response, limit: int, watch: _Watch, size: int = CHUNK
) -> Iterator[bytes]:
    """The body of a streamed answer in pieces as they arrive (at most ``size`` bytes each),
    counted in ``watch.received``; TooLarge past ``limit`` bytes (announced or sent), Expired
    once the deadline has passed."""
    announced = announced_length(resp)
    if announced is not None and announced > limit:
        raise TooLarge(limit, announced)
    got = 0
    for chunk in _arriving(resp, size):
        watch.check()
        got += len(chunk)
        watch.received = got
        if got > limit:
            raise TooLarge(limit)
        yield chunk
    watch.check()  # a connection shut at the deadline can look like the end of the body


def _arriving(resp: requests.Response, size: int) -> Iterator[bytes]:
    """What each read of the connection gives (``read1``), decoded, with urllib3's errors as
    requests raises them: ``iter_content`` would block until ``size`` bytes came, so a slow
    body would show no progress to the watchdog until then."""
    raw = resp.raw
    if not isinstance(raw, urllib3.HTTPResponse) or not hasattr(raw, "read1"):
        yield from resp.iter_content(size)  # a session of the caller's own, an older urllib3
        return
    try:
        while piece := raw.read1(size, decode_content=True):
            yield piece
    except urllib3.exceptions.ProtocolError as exc:
        raise requests.exceptions.ChunkedEncodingError(exc) from exc
    except urllib3.exceptions.DecodeError as exc:
        raise requests.exceptions.ContentDecodingError(exc) from exc
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise requests.exceptions.ConnectionError(exc) from exc
    except urllib3.exceptions.SSLError as exc:
        raise requests.exceptions.SSLError(exc) from exc
    resp._content_consumed = True  # type: ignore[attr-defined]  # as iter_content does


def read_capped(resp: requests.Response, limit: int, watch: _Watch) -> bytes:
    """The whole body of a streamed answer (see ``chunks``)."""
    return b"".join(chunks(resp, limit, watch))


def refused_headers(exc: BaseException) -> str | None:
    """What http.client refused in an answer's headers (more than 100, a line over 64 KiB),
    found in the exceptions ``exc`` wraps; None for anything else. No network fault: the
    server sent that, and asking again would get the same."""
    seen: BaseException | None = exc
    for _ in range(5):
        if isinstance(seen, http.client.LineTooLong) or (
            type(seen) is http.client.HTTPException and "more than" in str(seen)
        ):
            return str(seen)
        inner = [a for a in getattr(seen, "args", ()) if isinstance(a, BaseException)]
        seen = inner[-1] if inner else None
    return None


def size_text(limit: int) -> str:
    """``limit`` bytes as shown in messages: ``4 GiB``, ``1 KiB``, else ``1031 bytes``."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if limit >= 1 << shift and limit % (1 << shift) == 0:
            return f"{limit >> shift} {unit}"
    return f"{limit} bytes"


# -- where requests may go ---------------------------------------------------------------------


def check_file_url(url: str) -> None:
    """NotAllowed unless ``url`` is an absolute http(s) URL with a host."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        shown = url if len(url) <= 80 else url[:77] + "..."
        raise NotAllowed(f"{shown!r} is not an http(s) URL")

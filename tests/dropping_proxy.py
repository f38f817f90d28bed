"""A loopback HTTP proxy in front of the emulator that loses create answers on purpose.

Each request is forwarded to the emulator on a connection of its own and its answer read in
full, so a create always reaches the server and makes its task. Then, for the creates numbered
in ``drop`` (1-based, in arrival order), the client's connection is closed without an answer
(a lost answer: the client cannot know the task exists); for those in ``hold`` the answer is
kept back until ``release()`` (a process killed meanwhile never learns it). Every other answer
is passed on with ``Connection: close``. Once ``silent_after`` creates were passed on, the proxy
stands for a server that stopped answering: the creates after those, and every other request
from the last of those on, are read, neither forwarded nor answered, their connections held
open (``unanswered`` counts them) until ``speak()``. Once ``refuse_after`` creates were
answered, it stops listening: every connection is refused.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

CREATE = "/task/openapi/create"


class DroppingProxy:
    def __init__(
        self,
        upstream: str,
        *,
        drop: Iterable[int] = (),
        hold: Iterable[int] = (),
        garble: Iterable[int] = (),
    ):
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._drop = set(drop)
        self._hold = set(hold)
        self._garble = set(garble)  # creates answered with a body that is not JSON
        self._lock = threading.Lock()
        self._released = threading.Event()
        self.holding = threading.Event()  # set once a held create has reached the server
        self.creates = 0
        self.silent_after: int | None = None
        self.refuse_after: int | None = None
        self.unanswered = 0
        self._arrived = 0  # creates that reached the proxy
        self._speaking = threading.Event()
        self.dropped: list[dict[str, Any]] = []  # bodies of the creates whose answers were lost
        self._server = socket.create_server(("127.0.0.1", 0))
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.getsockname()[1]}"

    def __enter__(self) -> DroppingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self._speaking.set()
        self._server.close()

    def release(self) -> None:
        self._released.set()

    def speak(self) -> None:
        """Answer again: the requests held go on unanswered (their clients gave up)."""
        self.silent_after = None
        self._speaking.set()

    def _silent(self, path: str) -> bool:
        with self._lock:
            create = path.startswith(CREATE)
            self._arrived += int(create)
            if self.silent_after is None or self._arrived < self.silent_after + create:
                return False
            self.unanswered += 1
            return True

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            request = _read_request(conn)
            if request is None:
                return
            head, body = request
            path = head.split(b" ", 2)[1].decode()
            if self._silent(path):
                self._speaking.wait(60)
                return
            answer = self._forward(head, body)
            if path.startswith(CREATE):
                with self._lock:
                    self.creates += 1
                    number = self.creates
                if number in self._drop:
                    self.dropped.append(json.loads(body or b"{}"))
                    return  # closed without an answer
                if number in self._garble:
                    self.dropped.append(json.loads(body or b"{}"))
                    garbled = b"<html>gateway error</html>"
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: close\r\n"
                        + f"Content-Length: {len(garbled)}\r\n\r\n".encode()
                        + garbled
                    )
                    return
                if number in self._hold:
                    self.holding.set()
                    self._released.wait(60)
                    return
            conn.sendall(answer)
            if path.startswith(CREATE) and number == self.refuse_after:
                self._server.close()

    def _forward(self, head: bytes, body: bytes) -> bytes:
        with socket.create_connection(self._upstream) as up:
            up.sendall(_closing(head) + body)
            chunks = []
            while chunk := up.recv(65536):
                chunks.append(chunk)
        return _closing(b"".join(chunks))


def _read_request(conn: socket.socket) -> tuple[bytes, bytes] | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n", body


def _closing(message: bytes) -> bytes:
    """``message`` (a request or an answer) with its Connection header set to close."""
    head, sep, rest = message.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close"]) + sep + rest

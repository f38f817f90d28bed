"""The run's "server stopped answering" breaker, for the executor.

Every API request of a task (a create, an ``outputs`` call) ends in an answer, whatever it
says, or in none: a timeout, a connection refused or dropped (``TransportError``). Each task
retries those on its own; a server that has stopped answering would have every task wait out
its timeout and its retries, one after another. ``Breaker`` counts the requests in a row,
across the whole run, that got no answer: once ``requests`` of them did, and the first of
them was sent ``seconds`` ago or more, it trips. The executor then creates nothing more,
stops retrying and leaves every task it created as it is, recorded, for the next run to pick
up; the run ends with exit code 3 and ``SERVER_STOPPED`` in its errors.

With the defaults (2 requests, 45 s) a single round of timeouts (concurrent tasks all
waiting out one 30 s timeout together) does not trip it, a second one does: about 60 s
after the server fell silent, or 45 s when it refuses connections at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rhflow.errors import ApiError, TransportError

#: How the run-level error starts (the exit code is read from it).
SERVER_STOPPED = "the server stopped answering"


class Breaker:
    """Trips after ``requests`` API requests in a row got no answer, over ``seconds`` at least
    (from the sending of the first); ``on_trip`` gets the message once."""

    def __init__(
        self,
        requests: int,
        seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_trip: Callable[[str], None] = lambda message: None,
    ) -> None:
        self.requests = requests
        self.seconds = seconds
        self.on_trip = on_trip
        self.tripped: str | None = None
        self._clock = clock
        self._streak = 0
        self._since = 0.0  # when the first request of the streak was sent

    def answered(self) -> None:
        """A request got an answer (an error code, an HTTP error: the server is there)."""
        self._streak = 0

    def observe(self, err: ApiError, sent: float) -> None:
        """A request sent at ``sent`` (the clock's time) ended in ``err``."""
        if not isinstance(err, TransportError):
            self.answered()
            return
        if self._streak == 0:
            self._since = sent
        self._streak += 1
        silent = self._clock() - self._since
        if self.tripped is None and self._streak >= self.requests and silent >= self.seconds:
            self.tripped = (
                f"{SERVER_STOPPED}: {self._streak} API requests in a row got no answer over "
                f"{silent:.0f} s (the last: {err}); no more tasks are created, and those "
                "created are left as they are. Run the same command again once the server "
                "answers: it picks them up and creates only the tasks never created (one "
                "whose create got no answer is flagged 'may have been created twice')"
            )
            self.on_trip(self.tripped)

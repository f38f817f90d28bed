"""``rhflow -v``: one line per HTTP request on stderr (method, endpoint, answer, time).

The lines come from the ``rhflow.requests`` logger of the client, which never puts the key in
them (endpoints carry none; causes are scrubbed); the handler redacts the key once more in
case a message ever quotes it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from rhflow.api.client import split_keys
from rhflow.errors import redact

LOGGER = "rhflow.requests"


class _Redacting(logging.Formatter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__("rhflow: %(message)s")
        self._secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self._secrets:
            text = redact(text, secret)
        return text


def enable(api_key: str | None = None) -> Callable[[], None]:
    """Send request lines to the current stderr (each key, from ``api_key`` or RH_API_KEY, a
    pool's keys one by one, redacted); returns the function that stops it."""
    logger = logging.getLogger(LOGGER)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Redacting(split_keys(api_key or os.environ.get("RH_API_KEY"))))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

    def disable() -> None:
        logger.removeHandler(handler)
        if not logger.handlers:
            logger.setLevel(logging.NOTSET)
            logger.propagate = True

    return disable

"""Where a URL points, as ``scheme://host:port``: light enough for the commands that compare
servers without sending anything (``validate``'s lock check, ``status``), so they do not load
the HTTP client.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["origin_of"]


def origin_of(url: str) -> str:
    """``scheme://host:port`` of ``url``, lower-cased, with the scheme's default port written
    (``https://www.runninghub.cn`` -> ``https://www.runninghub.cn:443``); other text as given."""
    parts = urlsplit(url.strip())
    if not parts.scheme or not parts.hostname:
        return url.strip().rstrip("/")
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:
        port = None
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme.lower()}://{host}" + (f":{port}" if port else "")

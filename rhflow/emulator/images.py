"""Deterministic output files: PNG images (zlib + struct), MP4 videos and text files."""

from __future__ import annotations

import hashlib
import struct
import zlib

from rhflow.emulator import video

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_SIDE = 4096
#: Video frames are stored uncompressed (I_PCM): keep them small.
MAX_VIDEO_SIDE = 512
_IDENTITY = bytes(range(256))


def digest(*parts: object) -> bytes:
    """A stable 32-byte fingerprint of ``parts`` (their reprs)."""
    return hashlib.sha256("\x1f".join(repr(p) for p in parts).encode("utf-8")).digest()


def render_png(
    width: int, height: int, key: bytes, metadata: dict[str, str] | None = None
) -> bytes:
    """An RGB PNG whose pixels are a function of ``key`` only (a seeded colour gradient)."""
    width = max(1, min(int(width), MAX_SIDE))
    height = max(1, min(int(height), MAX_SIDE))
    rows = b"".join(b"\x00" + row for row in _rows(width, height, key))
    chunks = [_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))]
    for name, text in (metadata or {}).items():
        chunks.append(_chunk(b"tEXt", name.encode("latin-1") + b"\x00" + text.encode("utf-8")))
    chunks.append(_chunk(b"IDAT", zlib.compress(rows, 6)))
    chunks.append(_chunk(b"IEND", b""))
    return PNG_SIGNATURE + b"".join(chunks)


def _rows(width: int, height: int, key: bytes) -> list[bytes]:
    """Each row in C-speed slices: a seeded red ramp, a green level and a shifting blue ramp."""
    red0, green0, blue0, sx, sy, sb = key[:6]
    step_x, step_y = 1 + sx % 7, 1 + sy % 7
    reds = bytes((red0 + x * step_x) & 255 for x in range(width))
    blues = bytes((blue0 + x * (1 + sb % 3)) & 255 for x in range(width))
    rows = []
    row = bytearray(3 * width)
    row[0::3] = reds
    for y in range(height):
        offset = (y * step_y) & 255
        row[1::3] = bytes([(green0 + offset) & 255]) * width
        row[2::3] = blues.translate(_IDENTITY[offset:] + _IDENTITY[:offset])
        rows.append(bytes(row))
    return rows


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG, or None when ``data`` is not one."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def render_video(frames: int, width: int, height: int, key: bytes) -> bytes:
    """A real MP4 (H.264 in ISO BMFF) of ``frames`` frames that any decoder opens."""
    return video.mp4(frames, min(width, MAX_VIDEO_SIDE), min(height, MAX_VIDEO_SIDE), key)


def render_text(text: str, key: bytes) -> bytes:
    """A text output holds only what a SaveText node writes: its text.

    A text that comes from another node (a link, given here as "") is made up from the task's
    inputs, so that it is still deterministic and differs between tasks.
    """
    return (text or f"emulated text {key.hex()[:16]}").encode("utf-8")

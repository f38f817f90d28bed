"""Multipart uploads: read with a size limit, store under ``api/<sha256>.<ext>``."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import BodyPartReader, web
from aiohttp.http import HttpProcessingError

if TYPE_CHECKING:
    from rhflow.emulator.state import State

CHUNK = 64 * 1024
_SNIFF = {
    b"\x89PNG": "png",
    b"\xff\xd8\xff": "jpg",
    b"RIFF": "webp",
    b"PK\x03\x04": "zip",
    b"GIF8": "gif",
}


@dataclass(slots=True)
class Form:
    """The fields of a multipart upload; ``data`` is None when no file was sent."""

    fields: dict[str, str] = field(default_factory=dict)
    data: bytes | None = None
    filename: str = ""
    too_large: bool = False
    problem: str = ""


async def read_form(request: web.Request, limit: int) -> Form:
    """Read every part; a file over ``limit`` bytes is drained and flagged, not kept."""
    form = Form()
    if not request.content_type.startswith("multipart/"):
        return form
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if isinstance(part, BodyPartReader):
                await _read_part(form, part, limit)
    except (ValueError, HttpProcessingError) as exc:
        form.problem = f"the upload is not valid multipart/form-data: {exc}"
    return form


async def _read_part(form: Form, part: BodyPartReader, limit: int) -> None:
    if part.filename is not None or part.name == "file":
        form.filename = part.filename or ""
        form.data, form.too_large = await _read_limited(part, limit)
    elif part.name:
        form.fields[part.name] = (await part.read()).decode("utf-8", "replace")


async def _read_limited(part: BodyPartReader, limit: int) -> tuple[bytes | None, bool]:
    chunks: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk(CHUNK):
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
    if size > limit:
        return None, True
    return b"".join(chunks), False


def extension(filename: str, data: bytes) -> str:
    """The file's extension, from its name or else from its first bytes."""
    match = re.search(r"\.([A-Za-z0-9]{1,8})$", filename)
    if match:
        return match.group(1).lower()
    return next((ext for magic, ext in _SNIFF.items() if data.startswith(magic)), "bin")


def store(state: State, form: Form, prefix: str) -> str:
    """Keep the uploaded bytes; return the name LoadImage-style fields can use."""
    data = form.data or b""
    ext = extension(form.filename, data)
    digest = hashlib.sha256(data).hexdigest()
    name = digest if ext == "zip" else f"{prefix}{digest}.{ext}"
    state.uploads[name] = data
    state.uploads[f"{digest}.{ext}"] = data
    state.upload_count += 1
    state.upload_bytes += len(data)
    return name

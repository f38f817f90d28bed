"""Pillow, in the one module that imports it: open, fit, draw text, compare, save.

Pillow's exceptions become :class:`rhflow.errors.StateError` here (a file that is not an image,
a folder that cannot be written).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFont, ImageStat, UnidentifiedImageError

from rhflow.atomic import cannot_write, replacing
from rhflow.errors import StateError

Color = tuple[int, int, int]
Box = tuple[int, int, int, int]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

IMAGE_TYPES = frozenset({"png", "jpg", "jpeg", "webp", "gif", "bmp"})
#: Size of both images when they are compared, longer side in pixels.
COMPARE_SIZE = 256


def is_image(path: str | None) -> bool:
    """Whether ``path`` names a file Pillow can show (by its suffix)."""
    return bool(path) and Path(str(path)).suffix.lower().lstrip(".") in IMAGE_TYPES


def open_image(path: Path) -> Image.Image | None:
    """The image at ``path`` as RGB, or None when it is missing or not an image."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None  # a decompression bomb (a header claiming ~180 Mpx or more) is no image


def size_of(path: Path) -> tuple[int, int] | None:
    """Width and height of the image at ``path`` without decoding it, or None."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None


@lru_cache(maxsize=4)
def font(size: int = 14) -> Font:
    """Pillow's bundled font at ``size`` (its bitmap font where FreeType is missing)."""
    try:
        return ImageFont.load_default(size=size)
    except (OSError, ImportError):  # pragma: no cover - Pillow built without FreeType
        return ImageFont.load_default()


def text_size(text: str, size: int = 14) -> tuple[int, int]:
    left, top, right, bottom = font(size).getbbox(text or " ")
    return int(right - left), int(bottom - min(top, 0))


def canvas(width: int, height: int, color: Color = (255, 255, 255)) -> Image.Image:
    return Image.new("RGB", (max(width, 1), max(height, 1)), color)


def fill(image: Image.Image, box: Box, color: Color) -> None:
    ImageDraw.Draw(image).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=color)


def write(image: Image.Image, xy: tuple[int, int], text: str, *, size: int = 14) -> None:
    """Draw ``text`` in near-black with its top-left corner at ``xy``."""
    ImageDraw.Draw(image).text(xy, text, fill=(20, 20, 20), font=font(size))


def paste_fitted(image: Image.Image, picture: Image.Image, box: Box) -> Box:
    """Scale ``picture`` to fit ``box`` (keeping its shape), centre it there; return where."""
    width, height = box[2] - box[0], box[3] - box[1]
    scale = min(width / picture.width, height / picture.height)
    fitted = picture.resize(
        (max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
        Image.Resampling.LANCZOS,
    )
    left = box[0] + (width - fitted.width) // 2
    top = box[1] + (height - fitted.height) // 2
    image.paste(fitted, (left, top))
    return (left, top, left + fitted.width, top + fitted.height)


def save_png(image: Image.Image, path: Path) -> None:
    """Write ``image`` to ``path`` as PNG, replacing it atomically (:mod:`rhflow.atomic`)."""
    try:
        with replacing(path) as handle:
            image.save(handle, format="PNG")
    except OSError as exc:
        raise StateError(cannot_write(path, exc)) from exc


def difference(first: Path, second: Path) -> float | None:
    """How different two images look, from 0 (same pixels) to 1 (black against white).

    Both are scaled to the same size (the smaller one's shape, at most COMPARE_SIZE pixels on
    the longer side), and the mean absolute difference of their RGB values is taken. None when
    either file is not an image.
    """
    a, b = open_image(first), open_image(second)
    if a is None or b is None:
        return None
    scale = min(1.0, COMPARE_SIZE / max(a.width, a.height, b.width, b.height))
    size = (
        max(1, round(min(a.width, b.width) * scale)),
        max(1, round(min(a.height, b.height) * scale)),
    )
    delta = ImageChops.difference(a.resize(size), b.resize(size))
    return round(sum(ImageStat.Stat(delta).mean) / (3 * 255), 6)

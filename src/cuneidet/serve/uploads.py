"""Uploaded photos: checked by content and size, stored under server-generated names.

A photo is accepted only if its first bytes say JPEG, PNG or TIFF, Pillow reads it as that
format, it has at most ``max_pixels`` pixels (read from the header, before anything is decoded:
decompression bombs are refused cheaply) and it decodes completely. It is stored as
``<uuid>.<ext>`` with a JPEG rendition ``<uuid>.view.jpg`` for the browser (TIFF does not
display in browsers; the rendition's longest side is at most ``display_max_side``) and a
thumbnail ``<uuid>.thumb.jpg``. All files are written to temporary names and renamed, so a
refused or interrupted upload leaves nothing.
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import unicodedata
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from cuneidet.errors import CuneidetError, UploadRejectedError

log = logging.getLogger(__name__)

#: first bytes → format; Pillow must then agree
MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "TIFF": "tif"}
CHUNK = 1 << 20
#: longest side of the thumbnail shown in photo lists
THUMBNAIL_SIDE = 160


@dataclass(frozen=True)
class StoredPhoto:
    name: str
    stored_name: str
    format: str
    bytes: int
    sha256: str
    width: int
    height: int
    display_width: int
    display_height: int


def display_name(name: str | None) -> str:
    """The uploaded file name for display: last path component, no control characters."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if unicodedata.category(c)[0] != "C").strip()
    return base[:200] or "photo"


def original_path(folder: Path, stored_name: str, fmt: str) -> Path:
    return folder / f"{stored_name}.{EXTENSIONS[fmt]}"


def display_path(folder: Path, stored_name: str) -> Path:
    return folder / f"{stored_name}.view.jpg"


def thumbnail_path(folder: Path, stored_name: str) -> Path:
    return folder / f"{stored_name}.thumb.jpg"


def store_upload(
    stream: BinaryIO,
    name: str | None,
    folder: Path,
    max_bytes: int,
    max_pixels: int,
    display_max_side: int,
) -> StoredPhoto:
    """Check and store one uploaded photo (see the module doc); :class:`UploadRejectedError`
    says why a file is refused."""
    folder.mkdir(parents=True, exist_ok=True)
    shown = display_name(name)
    stored = uuid.uuid4().hex
    part = folder / f".{stored}.part"
    view_part = folder / f".{stored}.view.part"
    thumb_part = folder / f".{stored}.thumb.part"
    try:
        size, digest = _copy_limited(stream, part, max_bytes, shown)
        fmt = _sniff(part, shown)
        width, height = _check_image(part, fmt, shown, max_pixels)
        view_size = _write_display(part, view_part, display_max_side, shown)
        _write_display(view_part, thumb_part, THUMBNAIL_SIDE, shown)
        os.replace(thumb_part, thumbnail_path(folder, stored))
        os.replace(view_part, display_path(folder, stored))
        os.replace(part, original_path(folder, stored, fmt))
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT) or isinstance(error, CuneidetError):
            raise
        for done in (thumbnail_path(folder, stored), display_path(folder, stored)):
            done.unlink(missing_ok=True)  # renamed into place before the disk ran full
        raise UploadRejectedError(
            f"{shown}: the server's disk is full ({error.strerror}); nothing was stored: ask "
            "the administrator to free space in serve.data_dir, then upload again",
            507,
        ) from error
    finally:
        for leftover in (part, view_part, thumb_part):
            leftover.unlink(missing_ok=True)
    return StoredPhoto(shown, stored, fmt, size, digest, width, height, *view_size)


def remove_stored(folder: Path, stored_name: str, fmt: str) -> None:
    paths = (
        original_path(folder, stored_name, fmt),
        display_path(folder, stored_name),
        thumbnail_path(folder, stored_name),
    )
    for path in paths:
        path.unlink(missing_ok=True)


def _copy_limited(stream: BinaryIO, target: Path, max_bytes: int, shown: str) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with target.open("wb") as out:
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise UploadRejectedError(
                    f"{shown}: larger than the upload limit of {max_bytes / 2**20:.0f} MiB "
                    "(serve.max_upload_bytes)",
                    413,
                )
            digest.update(chunk)
            out.write(chunk)
    if size == 0:
        raise UploadRejectedError(f"{shown}: the file is empty", 415)
    return size, digest.hexdigest()


def _sniff(path: Path, shown: str) -> str:
    with path.open("rb") as handle:
        return sniff_format(handle.read(16), shown)


def sniff_format(head: bytes, shown: str) -> str:
    """JPEG, PNG or TIFF from a file's first bytes; anything else is refused (415)."""
    for magic, fmt in MAGIC:
        if head.startswith(magic):
            return fmt
    raise UploadRejectedError(
        f"{shown}: not a JPEG, PNG or TIFF image (judged by its content, not its name)", 415
    )


def read_small_image(
    stream: BinaryIO, name: str | None, max_bytes: int, max_pixels: int
) -> np.ndarray:
    """An RGBA array of a small uploaded image held in memory (a drawing), with the same checks
    as :func:`store_upload`: size, content type, pixels before decoding, complete decode."""
    shown = display_name(name)
    body = stream.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise UploadRejectedError(f"{shown}: larger than {max_bytes / 2**20:.0f} MiB", 413)
    if not body:
        raise UploadRejectedError(f"{shown}: the file is empty", 415)
    fmt = sniff_format(body[:16], shown)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(body)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise _too_many_pixels(shown, width, height, max_pixels)
                image.load()
                return np.asarray(image.convert("RGBA"))
    except Image.DecompressionBombError as error:
        raise UploadRejectedError(
            f"{shown}: refused as a decompression bomb ({error})", 413
        ) from error
    except (OSError, ValueError, SyntaxError) as error:
        raise UploadRejectedError(f"{shown}: truncated or corrupt {fmt} ({error})", 415) from error


def _check_image(path: Path, fmt: str, shown: str, max_pixels: int) -> tuple[int, int]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.format != fmt:
                    raise UploadRejectedError(
                        f"{shown}: starts like {fmt} but reads as {image.format}", 415
                    )
                width, height = image.size
                if width * height > max_pixels:
                    raise _too_many_pixels(shown, width, height, max_pixels)
                image.load()
    except Image.DecompressionBombError as error:
        raise UploadRejectedError(
            f"{shown}: refused as a decompression bomb ({error}); the limit is "
            f"{max_pixels / 1e6:.1f} MP (serve.max_pixels): scale the photo down",
            413,
        ) from error
    except (OSError, ValueError, SyntaxError) as error:
        raise UploadRejectedError(f"{shown}: truncated or corrupt {fmt} ({error})", 415) from error
    if width < 1 or height < 1:
        raise UploadRejectedError(f"{shown}: the image has no pixels", 415)
    return width, height


def _too_many_pixels(shown: str, width: int, height: int, max_pixels: int) -> UploadRejectedError:
    return UploadRejectedError(
        f"{shown}: {width}×{height} = {width * height / 1e6:.1f} MP exceeds the limit of "
        f"{max_pixels / 1e6:.1f} MP (serve.max_pixels); scale the photo down",
        413,
    )


def to_display_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB copy of any Pillow mode (16-bit and float images are stretched to their
    range, CMYK and palettes converted, alpha dropped)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) / (high - low) * 255 if high > low else values * 0
        return Image.fromarray(scaled.astype(np.uint8), "L").convert("RGB")
    return image.convert("RGB")


def _write_display(source: Path, target: Path, max_side: int, shown: str) -> tuple[int, int]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                image.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced size
                rgb = to_display_rgb(image)
    except (OSError, ValueError) as error:
        raise UploadRejectedError(f"{shown}: cannot be decoded ({error})", 415) from error
    rgb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    with target.open("wb") as out:
        rgb.save(out, "JPEG", quality=88)
    return rgb.size

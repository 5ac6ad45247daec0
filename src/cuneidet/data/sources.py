"""Tablet photographs behind one interface, whatever their origin.

A :class:`PhotoSource` maps a ``tablet_CDLI`` id (``P334894``, ``K08396``, ``VAT13604Vs``...) to a
fully decoded :class:`PIL.Image.Image`, returned as stored (mode ``RGB`` or ``L``, no EXIF
rotation): callers convert. Sources:

- :class:`FolderSource`: ``<root>/<tablet><ext>`` on disk;
- :class:`ChainSource`: the first of several sources that has the tablet;
- more kinds registered by their packages through the ``cuneidet.photo_sources`` entry point
  (``pyproject.toml``): the CDLI downloader (:mod:`cuneidet.data.cdli`: ``cdli``, ``folder+cdli``)
  and the synthetic forge (:mod:`cuneidet.forge`: ``forge``, ``folder+forge``). A user's package
  adds its own kind the same way, or calls :func:`register_photo_source`.

:func:`build_photo_source` builds one from config values.
"""

from __future__ import annotations

import inspect
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageFile

if TYPE_CHECKING:
    from cuneidet.data.views import AnnotatedSegment

from cuneidet.errors import ConfigError, DataNotFoundError, ImageLoadError

log = logging.getLogger(__name__)

#: Pillow refuses images above 2x ``MAX_IMAGE_PIXELS`` (decompression-bomb guard) and warns above
#: it. Its default (~89 MP) is too small for composite tablet photographs (the CSDD's largest is
#: ~30 MP, other CDLI composites can exceed 100 MP), so we raise it to 400 MP (warning) / 800 MP
#: (error) rather than disabling the guard. A larger value set elsewhere (or None) is kept.
MAX_IMAGE_PIXELS = 400_000_000
if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_IMAGE_PIXELS:
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

DEFAULT_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
_TABLET_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}")
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


class InvalidTabletIdError(ImageLoadError):
    """A tablet id that cannot name a photograph (empty, path separators, ``..``...)."""


def validate_tablet_id(tablet: str) -> str:
    """Return ``tablet`` if it is a safe id (letters, digits, ``_.+-``; no ``..``), else raise."""
    if not isinstance(tablet, str) or not _TABLET_ID.fullmatch(tablet) or ".." in tablet:
        raise InvalidTabletIdError(
            f"Invalid tablet id {tablet!r}: expected a CDLI-style id such as 'P334894' or "
            "'VAT13604Vs' (letters, digits, '_', '.', '+', '-'; no path separators or '..')."
        )
    return tablet


_warned_truncated = False


def _warn_truncated_allowed() -> None:
    global _warned_truncated
    _warned_truncated = True
    log.warning("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True: truncated photos may slip by")


def decode_image(path: Path, fix: str = "") -> Image.Image:
    """Open and fully decode ``path``; truncated or non-image files raise ``ImageLoadError``.
    16/32-bit photos come back as 8-bit grayscale (:func:`to_8bit`)."""
    if ImageFile.LOAD_TRUNCATED_IMAGES and not _warned_truncated:
        _warn_truncated_allowed()
    try:
        with Image.open(path) as image:
            image.load()
    except FileNotFoundError as exc:
        raise ImageLoadError(f"Photograph {path} does not exist. {fix}".strip()) from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageLoadError(f"{path} is not an image Pillow can read. {fix}".strip()) from exc
    except _DECODE_ERRORS as exc:
        raise ImageLoadError(
            f"Photograph {path} cannot be decoded ({exc}); it is probably truncated or "
            f"corrupt. {fix}".strip()
        ) from exc
    return to_8bit(image)


#: Pillow modes with more than 8 bits per pixel (one channel)
HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def to_8bit(image: Image.Image) -> Image.Image:
    """``image`` as 8-bit grayscale when it has a 16/32-bit mode, else unchanged.

    16-bit values are divided by 257 (65535 → 255, as a conversion to 8 bits does); 32-bit
    integer and float images, which have no fixed range, are stretched from their minimum to
    their maximum.
    """
    if image.mode not in HIGH_DEPTH_MODES:
        return image
    values = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16"):
        scaled = values / 257.0
    else:
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else values * 0.0
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")


class PhotoSource(ABC):
    """Gives the photograph of a tablet by its ``tablet_CDLI`` id."""

    @abstractmethod
    def load(self, tablet: str) -> Image.Image:
        """The fully decoded photograph (``RGB`` or ``L``; 16-bit ones as 8-bit ``L``);
        ``ImageLoadError`` if not."""

    @abstractmethod
    def has(self, tablet: str) -> bool:
        """Whether this source can (try to) provide ``tablet``, without expensive work."""

    @abstractmethod
    def describe(self) -> str:
        """One line for logs and error messages."""

    def truth_segments(
        self,
        collections: Sequence[str],
        exclude_tablets: set[str] | frozenset[str] = frozenset(),
        progress: bool = True,
    ) -> list[AnnotatedSegment]:
        """The assigned views of ``collections`` with the true boxes of their signs, for sources
        that make their photographs and so know them (the forge). Others cannot."""
        raise ConfigError(
            f"the photo source {self.describe()} does not know the true sign boxes of its photos; "
            "data.forge_train_collections needs a forge (it is built from "
            "data.image_source_options when data.image_source is forge or folder+forge)"
        )

    def __repr__(self) -> str:
        return f"<{self.describe()}>"


class FolderSource(PhotoSource):
    """Photographs stored as ``<root>/<tablet><ext>`` (first matching extension wins)."""

    def __init__(self, root: str | Path, extensions: Sequence[str] = DEFAULT_EXTENSIONS) -> None:
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            state = "is not a directory" if self.root.exists() else "does not exist"
            raise DataNotFoundError(
                f"Photo folder {self.root} {state}. Put the photographs there as "
                "<tablet_CDLI>.jpg, point data.image_folder at the right folder, or download "
                "them from CDLI (data.image_source=cdli or folder+cdli)."
            )
        self.extensions = tuple(_normalize_extension(ext) for ext in extensions)
        if not self.extensions:
            raise ConfigError("FolderSource needs at least one file extension")

    def path_for(self, tablet: str) -> Path | None:
        """The photograph file of ``tablet``, or ``None`` if absent."""
        validate_tablet_id(tablet)
        for ext in self.extensions:
            for variant in (ext, ext.upper()):
                path = self.root / f"{tablet}{variant}"
                if path.is_file():
                    return path
        return None

    def has(self, tablet: str) -> bool:
        return self.path_for(tablet) is not None

    def load(self, tablet: str) -> Image.Image:
        path = self.path_for(tablet)
        if path is None:
            names = ", ".join(f"{tablet}{ext}" for ext in self.extensions)
            raise ImageLoadError(
                f"No photograph of tablet {tablet} in {self.root} (looked for {names}). Put it "
                "there, or download it from CDLI (data.image_source=folder+cdli or cdli)."
            )
        return decode_image(path, fix=f"Replace {path} with a complete copy of the photograph.")

    def tablets(self) -> list[str]:
        """Ids of the tablets with a photograph in the folder, sorted."""
        found = {
            p.stem
            for p in self.root.iterdir()
            if p.suffix.lower() in self.extensions and _TABLET_ID.fullmatch(p.stem)
        }
        return sorted(found)

    def describe(self) -> str:
        return f"photo folder {self.root}"


def _normalize_extension(ext: str) -> str:
    ext = ext.strip().lower()
    return ext if ext.startswith(".") else f".{ext}"


class ChainSource(PhotoSource):
    """Several sources in order: the first that ``has`` a tablet provides it.

    With ``fall_through``, a source whose ``load`` fails hands over to the next one that has
    the tablet (e.g. CDLI 404 -> synthetic forge); otherwise its error is raised.
    """

    def __init__(self, sources: Sequence[PhotoSource], fall_through: bool = False) -> None:
        if not sources:
            raise ConfigError("ChainSource needs at least one photo source")
        self.sources = list(sources)
        self.fall_through = fall_through

    def has(self, tablet: str) -> bool:
        return any(source.has(tablet) for source in self.sources)

    def load(self, tablet: str) -> Image.Image:
        errors: list[str] = []
        for source in self.sources:
            if not source.has(tablet):
                errors.append(f"  - {source.describe()}: does not have it")
                continue
            try:
                return source.load(tablet)
            except ImageLoadError as exc:
                if not self.fall_through:
                    raise
                errors.append(f"  - {source.describe()}: {exc}")
        raise ImageLoadError(
            f"No photo source could provide tablet {tablet}. Tried:\n" + "\n".join(errors)
        )

    def describe(self) -> str:
        return "chain[" + " -> ".join(source.describe() for source in self.sources) + "]"


# -- registry and factory --------------------------------------------------------------------

PhotoSourceFactory = Callable[..., PhotoSource]
_REGISTRY: dict[str, PhotoSourceFactory] = {}


def register_photo_source(name: str, factory: PhotoSourceFactory, overwrite: bool = False) -> None:
    """Make ``build_photo_source(name, ...)`` call ``factory(data_dir=..., folder=..., ...)``.

    A factory takes keyword arguments ``data_dir: Path``, ``folder``, ``cache_dir``,
    ``url_template`` (each ``str | None``) plus its own options.
    """
    if name in _REGISTRY and not overwrite:
        raise ConfigError(f"Photo source kind {name!r} is already registered")
    _REGISTRY[name] = factory


def is_registered(name: str) -> bool:
    """Whether a kind is registered (without loading the built-in plugins)."""
    return name in _REGISTRY


ENTRY_POINT_GROUP = "cuneidet.photo_sources"


def _load_plugins(kind: str | None = None) -> None:
    """Load the ``cuneidet.photo_sources`` entry points (each names a function of its package
    that registers that kind): the one named ``kind``, or all of them. A package is imported only
    when one of its kinds is asked for."""
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if kind is not None and entry.name != kind:
            continue
        if entry.name in _REGISTRY:
            continue
        try:
            entry.load()()
        except Exception as exc:  # a broken plugin must not hide the other kinds
            log.warning("photo source plugin %s (%s) failed: %s", entry.name, entry.value, exc)


def photo_source_kinds() -> list[str]:
    """The registered kinds, sorted (every plugin loaded)."""
    _load_plugins()
    return sorted(_REGISTRY)


def build_photo_source(
    kind: str,
    data_dir: str | Path,
    folder: str | None = None,
    cache_dir: str | None = None,
    url_template: str | None = None,
    **kwargs: Any,
) -> PhotoSource:
    """Build the photo source ``kind`` from config values.

    Relative ``folder`` / ``cache_dir`` are taken relative to ``data_dir``. Extra ``kwargs``
    go to the source (e.g. ``timeout_s``, ``retries`` for ``cdli``; ``extensions`` for
    ``folder``); unknown ones raise ``ConfigError``.
    """
    if kind not in _REGISTRY:
        _load_plugins(kind)
    factory = _REGISTRY.get(kind)
    if factory is None:
        raise ConfigError(
            f"Unknown photo source {kind!r} (data.image_source); valid kinds: "
            + ", ".join(photo_source_kinds())
            + f". Kinds of other packages register through the {ENTRY_POINT_GROUP!r} entry point; "
            "if 'cdli' or 'forge' is missing, reinstall cuneidet (make install)"
        )
    arguments = dict(
        data_dir=Path(data_dir),
        folder=folder,
        cache_dir=cache_dir,
        url_template=url_template,
        **kwargs,
    )
    try:
        inspect.signature(factory).bind(**arguments)
    except TypeError as exc:
        raise ConfigError(f"Bad options for photo source {kind!r}: {exc}") from exc
    return factory(**arguments)


def under_data_dir(data_dir: Path, value: str | None, default: str) -> Path:
    """``value`` (or ``default``) as a path; relative ones are taken relative to ``data_dir``."""
    path = Path(value if value else default).expanduser()
    return path if path.is_absolute() else data_dir / path


def _folder_factory(
    data_dir: Path,
    folder: str | None = None,
    cache_dir: str | None = None,
    url_template: str | None = None,
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
) -> PhotoSource:
    return FolderSource(under_data_dir(data_dir, folder, "csdd/images"), extensions=extensions)


register_photo_source("folder", _folder_factory)

__all__ = [
    "DEFAULT_EXTENSIONS",
    "ENTRY_POINT_GROUP",
    "MAX_IMAGE_PIXELS",
    "ChainSource",
    "FolderSource",
    "InvalidTabletIdError",
    "PhotoSource",
    "build_photo_source",
    "decode_image",
    "is_registered",
    "photo_source_kinds",
    "register_photo_source",
    "to_8bit",
    "under_data_dir",
    "validate_tablet_id",
]

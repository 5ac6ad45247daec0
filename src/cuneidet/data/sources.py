"""Tablet photographs behind one interface, whatever their origin.

A :class:`PhotoSource` maps a ``tablet_CDLI`` id (``P334894``, ``K08396``, ``VAT13604Vs``...) to a
fully decoded :class:`PIL.Image.Image`, returned as stored (mode ``RGB`` or ``L``, no EXIF
rotation): callers convert. Sources:

- :class:`FolderSource`: ``<root>/<tablet><ext>`` on disk;
- :class:`CdliDownloader`: CDLI by number, cached on disk (timeouts, retries with backoff,
  resumable ``.part`` files, verified before an atomic rename);
- :class:`ChainSource`: the first of several sources that has the tablet;
- others (the synthetic forge) via :func:`register_photo_source`.

:func:`build_photo_source` builds one from config values.
"""

from __future__ import annotations

import contextlib
import http.client
import inspect
import logging
import os
import re
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageFile

from cuneidet.errors import ConfigError, CuneidetError, DataNotFoundError, ImageLoadError

try:  # advisory lock between processes that share a cache (POSIX only)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

#: Pillow refuses images above 2x ``MAX_IMAGE_PIXELS`` (decompression-bomb guard) and warns above
#: it. Its default (~89 MP) is too small for composite tablet photographs (the CSDD's largest is
#: ~30 MP, other CDLI composites can exceed 100 MP), so we raise it to 400 MP (warning) / 800 MP
#: (error) rather than disabling the guard. A larger value set elsewhere (or None) is kept.
MAX_IMAGE_PIXELS = 400_000_000
if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_IMAGE_PIXELS:
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

DEFAULT_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
DEFAULT_CDLI_URL = "https://cdli.mpiwg-berlin.mpg.de/dl/photo/{tablet}.jpg"
_TABLET_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}")
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)
_CHUNK = 1 << 16


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
    """Open and fully decode ``path``; truncated or non-image files raise ``ImageLoadError``."""
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
    return image


class PhotoSource(ABC):
    """Gives the photograph of a tablet by its ``tablet_CDLI`` id."""

    @abstractmethod
    def load(self, tablet: str) -> Image.Image:
        """The fully decoded photograph, as stored (``RGB`` or ``L``); ``ImageLoadError`` if not."""

    @abstractmethod
    def has(self, tablet: str) -> bool:
        """Whether this source can (try to) provide ``tablet``, without expensive work."""

    @abstractmethod
    def describe(self) -> str:
        """One line for logs and error messages."""

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


class _Retryable(Exception):
    """A transient failure (timeout, connection error, 5xx): worth another attempt."""


@dataclass
class DownloadReport:
    """Outcome of :meth:`CdliDownloader.download_many`."""

    ok: list[str] = field(default_factory=list)
    skipped_cached: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.ok) + len(self.skipped_cached) + len(self.failed)

    def summary(self) -> str:
        return (
            f"{len(self.ok)} downloaded, {len(self.skipped_cached)} already cached, "
            f"{len(self.failed)} failed (of {self.total})"
        )


class CdliDownloader(PhotoSource):
    """Downloads photographs from CDLI by number into a disk cache (``<cache>/<tablet>.jpg``).

    A download streams into ``<tablet>.jpg.part`` and resumes it with an HTTP ``Range`` request
    after an interruption; the file is renamed into place only once it decodes as an image.
    Timeouts, connection errors, 408/429 and 5xx are retried ``retries`` times with exponential
    backoff (``backoff_s``, doubled per attempt); 404 fails at once. ``has`` is optimistic: any
    valid id may be downloadable, and finding out needs the network.
    """

    def __init__(
        self,
        cache_dir: str | Path,
        url_template: str = DEFAULT_CDLI_URL,
        timeout_s: float = 30.0,
        retries: int = 3,
        backoff_s: float = 1.0,
        user_agent: str = "cuneidet/0.1",
    ) -> None:
        if "{tablet}" not in url_template:
            raise ConfigError(f"url_template {url_template!r} must contain '{{tablet}}'")
        if timeout_s <= 0 or retries < 0 or backoff_s < 0:
            raise ConfigError(
                f"Invalid downloader settings: timeout_s={timeout_s} (must be > 0), "
                f"retries={retries} (>= 0), backoff_s={backoff_s} (>= 0)"
            )
        self.cache_dir = Path(cache_dir).expanduser().resolve()
        self.url_template = url_template
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.user_agent = user_agent

    # -- PhotoSource -------------------------------------------------------------------------

    def has(self, tablet: str) -> bool:
        validate_tablet_id(tablet)
        return True

    def load(self, tablet: str) -> Image.Image:
        cached = self._load_cached(tablet)
        if cached is not None:
            return cached
        return self._download(tablet)

    def describe(self) -> str:
        return f"CDLI downloader {self.url_template} (cache {self.cache_dir})"

    # -- public helpers ----------------------------------------------------------------------

    def url_for(self, tablet: str) -> str:
        return self.url_template.format(tablet=validate_tablet_id(tablet))

    def cache_path(self, tablet: str) -> Path:
        return self.cache_dir / f"{validate_tablet_id(tablet)}.jpg"

    def is_cached(self, tablet: str) -> bool:
        """Whether a finished download of ``tablet`` is in the cache (not decoded)."""
        path = self.cache_path(tablet)
        return path.is_file() and path.stat().st_size > 0

    def download_many(
        self, tablets: Iterable[str], progress: bool = True, verify_cached: bool = False
    ) -> DownloadReport:
        """Fill the cache with ``tablets``, continuing past failures (each logged and counted).

        Cached files are trusted (they were verified before being renamed into place) unless
        ``verify_cached``, which decodes them and re-downloads broken ones.
        """
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        report = DownloadReport()
        unique = list(dict.fromkeys(tablets))
        with (
            logging_redirect_tqdm(),
            tqdm(unique, desc="CDLI photos", unit="tablet", disable=not progress) as bar,
        ):
            for tablet in bar:
                self._download_one(tablet, report, verify_cached)
                bar.set_postfix(failed=len(report.failed), refresh=False)
        if report.failed:
            log.warning("CDLI download: %s; failed: %s", report.summary(), sorted(report.failed))
        else:
            log.info("CDLI download: %s", report.summary())
        return report

    # -- internals ---------------------------------------------------------------------------

    def _download_one(self, tablet: str, report: DownloadReport, verify: bool) -> None:
        try:
            if self.is_cached(tablet) and (not verify or self._load_cached(tablet) is not None):
                report.skipped_cached.append(tablet)
                return
            self._download(tablet).close()
            report.ok.append(tablet)
        except (CuneidetError, OSError) as exc:
            report.failed[tablet] = str(exc)
            log.warning("Download %d failed: %s: %s", len(report.failed), tablet, exc)

    def _load_cached(self, tablet: str) -> Image.Image | None:
        path = self.cache_path(tablet)
        if not path.is_file():
            return None
        try:
            return decode_image(path)
        except ImageLoadError as exc:
            log.warning("Discarding broken cached photo (%s); downloading it again", exc)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return None

    def _download(self, tablet: str) -> Image.Image:
        target = self.cache_path(tablet)
        part = target.with_name(target.name + ".part")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with self._cache_lock():
            cached = self._load_cached(tablet)  # another process may have finished it
            if cached is not None:
                return cached
            for attempt in range(self.retries + 1):
                try:
                    resumed = self._fetch(tablet, part)
                except _Retryable as exc:
                    self._give_up_or_wait(tablet, attempt, exc)
                    continue
                image = self._verify_part(tablet, part, resumed, attempt)
                if image is not None:
                    os.replace(part, target)
                    log.info("Downloaded %s -> %s", tablet, target)
                    return image
        raise AssertionError("unreachable")  # pragma: no cover

    def _give_up_or_wait(self, tablet: str, attempt: int, exc: Exception) -> None:
        if attempt >= self.retries:
            raise ImageLoadError(
                f"Could not download the photograph of {tablet} from {self.url_for(tablet)} "
                f"after {attempt + 1} attempts: {exc}. Check the network (or the URL template), "
                "run the download again to resume, or provide a local photo folder."
            ) from exc
        delay = self.backoff_s * 2**attempt
        log.warning(
            "%s: %s; retrying in %.1f s (%d/%d)", tablet, exc, delay, attempt + 1, self.retries
        )
        time.sleep(delay)

    def _verify_part(
        self, tablet: str, part: Path, resumed: bool, attempt: int
    ) -> Image.Image | None:
        """The decoded ``.part``; ``None`` to restart a bad resumed file; raise if hopeless."""
        try:
            return decode_image(part)
        except ImageLoadError as exc:
            part.unlink(missing_ok=True)
            if resumed and attempt < self.retries:
                log.warning("%s: resumed download does not decode; restarting it", tablet)
                return None
            raise ImageLoadError(
                f"The download of {tablet} from {self.url_for(tablet)} is not a valid image "
                f"({exc.__cause__ or exc}); nothing was cached. Check the URL template "
                "or provide a local photo folder."
            ) from exc

    def _fetch(self, tablet: str, part: Path) -> bool:
        """Download (or resume) into ``part``; returns whether earlier bytes were kept."""
        offset = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(self.url_for(tablet), headers=self._headers(offset))
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout_s)
        except urllib.error.HTTPError as exc:
            exc.close()
            return self._handle_http_error(tablet, exc.code, offset, part)
        except (urllib.error.URLError, http.client.HTTPException, TimeoutError, OSError) as exc:
            raise _Retryable(f"connection failed: {_reason(exc)}") from exc
        with response:
            return self._stream(response, part, offset)

    def _headers(self, offset: int) -> dict[str, str]:
        headers = {"User-Agent": self.user_agent, "Accept": "image/*, */*;q=0.1"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        return headers

    def _handle_http_error(self, tablet: str, code: int, offset: int, part: Path) -> bool:
        if code == 416 and offset:  # the .part already holds everything
            return True
        if code == 404:
            part.unlink(missing_ok=True)
            raise ImageLoadError(
                f"CDLI has no photograph for {tablet} (HTTP 404 at {self.url_for(tablet)}); "
                "check the number or provide a local photo folder (data.image_source=folder)."
            )
        if code in (408, 429) or code >= 500:
            raise _Retryable(f"HTTP {code}")
        raise ImageLoadError(
            f"Downloading {tablet} from {self.url_for(tablet)} failed with HTTP {code}; "
            "check the URL template or provide a local photo folder."
        )

    def _stream(self, response: http.client.HTTPResponse, part: Path, offset: int) -> bool:
        status = response.status
        if status not in (200, 206):
            raise _Retryable(f"unexpected HTTP status {status}")
        append = status == 206 and offset > 0
        if append and _content_range_start(response) != offset:
            part.unlink(missing_ok=True)
            content_range = response.headers.get("Content-Range")
            raise _Retryable(f"server resumed at the wrong offset (Content-Range {content_range})")
        if offset and not append:
            log.info("%s: server ignored the Range request; restarting", part.name)
        expected = response.headers.get("Content-Length")
        written = 0
        try:
            with open(part, "ab" if append else "wb") as handle:
                written = _copy(response, handle)
        except (http.client.HTTPException, TimeoutError, OSError) as exc:
            raise _Retryable(f"transfer interrupted after {written} bytes: {_reason(exc)}") from exc
        if expected is not None and expected.isdigit() and written < int(expected):
            raise _Retryable(f"transfer ended after {written} of {expected} bytes")
        return append

    @contextlib.contextmanager
    def _cache_lock(self) -> Iterator[None]:
        """Serialize downloads between processes sharing the cache (no-op without fcntl)."""
        if fcntl is None:  # pragma: no cover
            yield
            return
        with open(self.cache_dir / ".download.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _copy(response: http.client.HTTPResponse, handle: Any) -> int:
    written = 0
    while chunk := response.read(_CHUNK):
        handle.write(chunk)
        written += len(chunk)
    handle.flush()
    os.fsync(handle.fileno())
    return written


def _content_range_start(response: http.client.HTTPResponse) -> int | None:
    match = re.match(r"bytes\s+(\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason) if reason is not None else (str(exc) or type(exc).__name__)


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


def _register_builtin_kinds() -> None:
    """Import the packages that register more kinds (the forge), on first use."""
    import cuneidet.forge  # noqa: F401  (registers "forge" and "folder+forge")


def photo_source_kinds() -> list[str]:
    """The registered kinds, sorted."""
    _register_builtin_kinds()
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
    _register_builtin_kinds()
    factory = _REGISTRY.get(kind)
    if factory is None:
        raise ConfigError(
            f"Unknown photo source {kind!r} (data.image_source); valid kinds: "
            + ", ".join(photo_source_kinds())
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


def _cdli_factory(
    data_dir: Path,
    folder: str | None = None,
    cache_dir: str | None = None,
    url_template: str | None = None,
    timeout_s: float = 30.0,
    retries: int = 3,
    backoff_s: float = 1.0,
    user_agent: str = "cuneidet/0.1",
) -> PhotoSource:
    return CdliDownloader(
        under_data_dir(data_dir, cache_dir, "csdd/images_cdli"),
        url_template=url_template or DEFAULT_CDLI_URL,
        timeout_s=timeout_s,
        retries=retries,
        backoff_s=backoff_s,
        user_agent=user_agent,
    )


def _folder_cdli_factory(
    data_dir: Path,
    folder: str | None = None,
    cache_dir: str | None = None,
    url_template: str | None = None,
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
    timeout_s: float = 30.0,
    retries: int = 3,
    backoff_s: float = 1.0,
    user_agent: str = "cuneidet/0.1",
) -> PhotoSource:
    downloader = _cdli_factory(
        data_dir,
        cache_dir=cache_dir,
        url_template=url_template,
        timeout_s=timeout_s,
        retries=retries,
        backoff_s=backoff_s,
        user_agent=user_agent,
    )
    folder_path = under_data_dir(data_dir, folder, "csdd/images")
    if folder is None and not folder_path.is_dir():
        log.info("No local photo folder at %s; using the CDLI downloader only", folder_path)
        return downloader
    return ChainSource([FolderSource(folder_path, extensions=extensions), downloader])


register_photo_source("folder", _folder_factory)
register_photo_source("cdli", _cdli_factory)
register_photo_source("folder+cdli", _folder_cdli_factory)

__all__ = [
    "DEFAULT_CDLI_URL",
    "DEFAULT_EXTENSIONS",
    "MAX_IMAGE_PIXELS",
    "CdliDownloader",
    "ChainSource",
    "DownloadReport",
    "FolderSource",
    "InvalidTabletIdError",
    "PhotoSource",
    "build_photo_source",
    "decode_image",
    "is_registered",
    "photo_source_kinds",
    "register_photo_source",
    "under_data_dir",
    "validate_tablet_id",
]

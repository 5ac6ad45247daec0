"""Photographs from CDLI by number: the ``cdli`` and ``folder+cdli`` photo sources.

:class:`CdliDownloader` fetches ``<url_template>`` per tablet into a cache folder, with timeouts,
retries with backoff, resumable ``.part`` files (HTTP ranges) and a decode check before an atomic
rename; processes sharing a cache take an advisory lock. The kinds are registered with
:mod:`cuneidet.data.sources` through the ``cuneidet.photo_sources`` entry point
(:func:`register`).
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from cuneidet.data.sources import (
    DEFAULT_EXTENSIONS,
    ChainSource,
    FolderSource,
    PhotoSource,
    decode_image,
    is_registered,
    register_photo_source,
    under_data_dir,
    validate_tablet_id,
)
from cuneidet.errors import ConfigError, CuneidetError, ImageLoadError

try:  # advisory lock between processes that share a cache (POSIX only)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

DEFAULT_CDLI_URL = "https://cdli.mpiwg-berlin.mpg.de/dl/photo/{tablet}.jpg"
_CHUNK = 1 << 16


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


def register() -> None:
    """Register ``cdli`` and ``folder+cdli`` (kinds registered earlier are kept)."""
    for name, factory in (("cdli", _cdli_factory), ("folder+cdli", _folder_cdli_factory)):
        if not is_registered(name):
            register_photo_source(name, factory)


__all__ = ["DEFAULT_CDLI_URL", "CdliDownloader", "DownloadReport", "register"]

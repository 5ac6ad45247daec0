"""Photo sources: local folder, CDLI downloader (against a loopback server), chain, factory."""

from __future__ import annotations

import contextlib
import io
import random
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from cuneidet.data.cdli import CdliDownloader, DownloadReport
from cuneidet.data.sources import (
    ChainSource,
    FolderSource,
    InvalidTabletIdError,
    PhotoSource,
    build_photo_source,
    photo_source_kinds,
    register_photo_source,
)
from cuneidet.errors import ConfigError, DataNotFoundError, ImageLoadError

MAX_REQUESTS = 40  # the server answers 410 Gone beyond this, so a runaway client loop ends


def jpeg_bytes(size: tuple[int, int] = (96, 64), seed: int = 0, mode: str = "RGB") -> bytes:
    """A small noisy JPEG (noise keeps it several KB, so halves are really truncated)."""
    rng = random.Random(seed)
    channels = len(mode)
    pixels = bytes(rng.randrange(256) for _ in range(size[0] * size[1] * channels))
    buffer = io.BytesIO()
    Image.frombytes(mode, size, pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photo() -> bytes:
    return jpeg_bytes()


# -- loopback HTTP server ------------------------------------------------------------------------


class PhotoServer(ThreadingHTTPServer):
    """Serves ``files`` at ``/photo/<name>``; ``actions[name]`` scripts the next answers."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.files: dict[str, bytes] = {}
        self.actions: dict[str, list[str]] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.support_range = True
        self.sleep_s = 1.0
        self.stop = threading.Event()

    @property
    def url_template(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/photo/{{tablet}}.jpg"

    def count(self, name: str) -> int:
        return sum(path.endswith(f"/{name}") for path, _ in self.requests)


class Handler(BaseHTTPRequestHandler):
    server: PhotoServer

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        if len(server.requests) > MAX_REQUESTS:
            self.send_error(410)
            return
        name = self.path.rsplit("/", 1)[-1]
        queue = server.actions.get(name, [])
        action = queue.pop(0) if queue else "ok"
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._answer(action, server.files.get(name))

    def _answer(self, action: str, body: bytes | None) -> None:
        if action == "500":
            self.send_error(500)
        elif action == "sleep":
            self.server.stop.wait(self.server.sleep_s)
            self.send_error(503)
        elif body is None:
            self.send_error(404)
        elif action == "drop_half":  # promise everything, send half, hang up
            self._send(200, body[: len(body) // 2], {"Content-Length": str(len(body))})
            self.close_connection = True
        else:
            self._send_file(body)

    def _send_file(self, body: bytes) -> None:
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if not (match and self.server.support_range):
            self._send(200, body)
            return
        start = int(match.group(1))
        if start >= len(body):
            self._send(416, b"", {"Content-Range": f"bytes */{len(body)}"})
            return
        content_range = f"bytes {start}-{len(body) - 1}/{len(body)}"
        self._send(206, body[start:], {"Content-Range": content_range})

    def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "image/jpeg")
        headers = {"Content-Length": str(len(payload)), **(headers or {})}
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def server() -> Iterator[PhotoServer]:
    srv = PhotoServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield srv
    finally:
        srv.stop.set()
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=5)


def downloader(server: PhotoServer, cache: Path, **kwargs: object) -> CdliDownloader:
    options: dict = {"timeout_s": 2.0, "retries": 2, "backoff_s": 0.01, **kwargs}
    return CdliDownloader(cache, url_template=server.url_template, **options)


def cache_files(cache: Path) -> list[str]:
    """Files in the cache except the (hidden) lock file."""
    if not cache.exists():
        return []
    return sorted(p.name for p in cache.iterdir() if p.name != ".download.lock")


# -- FolderSource ---------------------------------------------------------------------------------


def test_folder_source_loads_as_stored(tmp_path: Path) -> None:
    (tmp_path / "P000001.jpg").write_bytes(jpeg_bytes())
    Image.new("L", (20, 10), 128).save(tmp_path / "VAT13604Vs.png")
    source = FolderSource(tmp_path)
    assert isinstance(source, PhotoSource)
    assert source.has("P000001") and source.has("VAT13604Vs") and not source.has("P999999")
    rgb = source.load("P000001")
    assert (rgb.mode, rgb.size) == ("RGB", (96, 64))
    grey = source.load("VAT13604Vs")
    assert (grey.mode, grey.size) == ("L", (20, 10))
    assert grey.getpixel((3, 3)) == 128  # decoded, usable after the file was closed
    assert source.tablets() == ["P000001", "VAT13604Vs"]
    assert str(tmp_path) in source.describe()


def test_folder_source_upper_case_extension(tmp_path: Path) -> None:
    (tmp_path / "K08396.JPG").write_bytes(jpeg_bytes())
    assert FolderSource(tmp_path).load("K08396").size == (96, 64)


def test_folder_source_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="does not exist"):
        FolderSource(tmp_path / "nope")


def test_folder_source_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError) as info:
        FolderSource(tmp_path).load("P123456")
    message = str(info.value)
    assert "P123456" in message and str(tmp_path) in message
    assert "P123456.jpg" in message and "cdli" in message


def test_folder_source_truncated_jpeg(tmp_path: Path) -> None:
    data = jpeg_bytes()
    (tmp_path / "P000002.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="truncated") as info:
        FolderSource(tmp_path).load("P000002")
    assert "P000002.jpg" in str(info.value)


def test_folder_source_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "P000003.jpg").write_text("this is not a photograph\n")
    with pytest.raises(ImageLoadError, match="not an image") as info:
        FolderSource(tmp_path).load("P000003")
    assert "P000003.jpg" in str(info.value)


@pytest.mark.parametrize("bad", ["../P1", "a/b", "..", "", ".hidden", "P1\\x", "P 1", "P1\n"])
def test_invalid_tablet_ids_rejected(tmp_path: Path, bad: str) -> None:
    source = FolderSource(tmp_path)
    with pytest.raises(InvalidTabletIdError, match="Invalid tablet id"):
        source.load(bad)
    with pytest.raises(InvalidTabletIdError):
        source.has(bad)


# -- CdliDownloader -------------------------------------------------------------------------------


def test_download_then_cache_hit(server: PhotoServer, tmp_path: Path, photo: bytes) -> None:
    server.files["P000010.jpg"] = photo
    cache = tmp_path / "cache"
    source = downloader(server, cache)
    image = source.load("P000010")
    assert image.size == (96, 64)
    assert (cache / "P000010.jpg").read_bytes() == photo
    assert cache_files(cache) == ["P000010.jpg"]
    assert source.has("P000010") and source.is_cached("P000010")
    source.load("P000010")
    downloader(server, cache).load("P000010")  # a fresh instance reuses the cache too
    assert server.count("P000010.jpg") == 1
    assert server.requests[0][1] is None  # no Range header on a fresh download


def test_resume_from_part_with_range(server: PhotoServer, tmp_path: Path, photo: bytes) -> None:
    server.files["P000011.jpg"] = photo
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "P000011.jpg.part").write_bytes(photo[:1000])
    downloader(server, cache).load("P000011")
    assert server.requests == [("/photo/P000011.jpg", "bytes=1000-")]
    assert (cache / "P000011.jpg").read_bytes() == photo
    assert cache_files(cache) == ["P000011.jpg"]


def test_server_ignoring_range_restarts(server: PhotoServer, tmp_path: Path, photo: bytes) -> None:
    server.files["P000012.jpg"] = photo
    server.support_range = False
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "P000012.jpg.part").write_bytes(photo[:1000])
    downloader(server, cache).load("P000012")
    assert server.requests == [("/photo/P000012.jpg", "bytes=1000-")]  # asked, got 200
    assert (cache / "P000012.jpg").read_bytes() == photo  # not 1000 bytes + full file


def test_complete_part_gets_416_and_is_verified(
    server: PhotoServer, tmp_path: Path, photo: bytes
) -> None:
    server.files["P000013.jpg"] = photo
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "P000013.jpg.part").write_bytes(photo)
    downloader(server, cache).load("P000013")
    assert server.count("P000013.jpg") == 1
    assert (cache / "P000013.jpg").read_bytes() == photo


def test_dropped_connection_resumes_on_retry(
    server: PhotoServer, tmp_path: Path, photo: bytes
) -> None:
    server.files["P000014.jpg"] = photo
    server.actions["P000014.jpg"] = ["drop_half"]
    cache = tmp_path / "cache"
    downloader(server, cache).load("P000014")
    assert [r for _, r in server.requests] == [None, f"bytes={len(photo) // 2}-"]
    assert (cache / "P000014.jpg").read_bytes() == photo


def test_retry_after_500(server: PhotoServer, tmp_path: Path, photo: bytes) -> None:
    server.files["P000015.jpg"] = photo
    server.actions["P000015.jpg"] = ["500", "500"]
    cache = tmp_path / "cache"
    downloader(server, cache, retries=2).load("P000015")
    assert server.count("P000015.jpg") == 3
    assert (cache / "P000015.jpg").read_bytes() == photo


def test_persistent_500_gives_up(server: PhotoServer, tmp_path: Path) -> None:
    server.actions["P000016.jpg"] = ["500"] * 5
    with pytest.raises(ImageLoadError, match=r"after 3 attempts.*HTTP 500"):
        downloader(server, tmp_path / "cache", retries=2).load("P000016")
    assert server.count("P000016.jpg") == 3


def test_404_fails_at_once(server: PhotoServer, tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="CDLI has no photograph for P000017") as info:
        downloader(server, tmp_path / "cache", retries=3).load("P000017")
    assert "local photo folder" in str(info.value)
    assert server.count("P000017.jpg") == 1
    assert cache_files(tmp_path / "cache") == []


def test_timeout_is_retried_then_fails(server: PhotoServer, tmp_path: Path, photo: bytes) -> None:
    server.files["P000018.jpg"] = photo
    server.actions["P000018.jpg"] = ["sleep"] * 5
    server.sleep_s = 1.0
    start = time.monotonic()
    with pytest.raises(ImageLoadError, match="after 2 attempts"):
        downloader(server, tmp_path / "cache", timeout_s=0.2, retries=1).load("P000018")
    assert time.monotonic() - start < 1.5  # gave up on the client side, did not wait
    assert server.count("P000018.jpg") == 2
    assert cache_files(tmp_path / "cache") == []


def test_corrupt_payload_leaves_nothing(server: PhotoServer, tmp_path: Path) -> None:
    server.files["P000019.jpg"] = b"<html>photo not available</html>" * 10
    cache = tmp_path / "cache"
    with pytest.raises(ImageLoadError, match="not a valid image"):
        downloader(server, cache).load("P000019")
    assert cache_files(cache) == []
    assert server.count("P000019.jpg") == 1  # deterministic garbage is not re-downloaded


def test_corrupt_part_is_restarted(server: PhotoServer, tmp_path: Path, photo: bytes) -> None:
    server.files["P000020.jpg"] = photo
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "P000020.jpg.part").write_bytes(b"garbage!" * 125)  # 1000 wrong bytes
    downloader(server, cache).load("P000020")
    assert [r for _, r in server.requests] == ["bytes=1000-", None]
    assert (cache / "P000020.jpg").read_bytes() == photo


def test_broken_cache_file_is_replaced(server: PhotoServer, tmp_path: Path, photo: bytes) -> None:
    server.files["P000021.jpg"] = photo
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "P000021.jpg").write_bytes(photo[:500])
    downloader(server, cache).load("P000021")
    assert (cache / "P000021.jpg").read_bytes() == photo


def test_downloader_rejects_invalid_id(server: PhotoServer, tmp_path: Path) -> None:
    source = downloader(server, tmp_path / "cache")
    for bad in ["../../etc/passwd", "P1/x", ".."]:
        with pytest.raises(InvalidTabletIdError):
            source.load(bad)
    assert server.requests == []


def test_downloader_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tablet"):
        CdliDownloader(tmp_path, url_template="http://127.0.0.1/photo.jpg")
    with pytest.raises(ConfigError, match="timeout_s"):
        CdliDownloader(tmp_path, timeout_s=0)


def test_download_many_reports(server: PhotoServer, tmp_path: Path, photo: bytes) -> None:
    for name in ("P000030", "P000031", "P000032"):
        server.files[f"{name}.jpg"] = photo
    cache = tmp_path / "cache"
    source = downloader(server, cache)
    source.load("P000030")
    report = source.download_many(
        ["P000030", "P000031", "P000404", "P000032", "P000031", "bad/id"], progress=False
    )
    assert isinstance(report, DownloadReport)
    assert report.skipped_cached == ["P000030"]
    assert report.ok == ["P000031", "P000032"]
    assert set(report.failed) == {"P000404", "bad/id"}
    assert "CDLI has no photograph" in report.failed["P000404"]
    assert report.total == 5
    assert "2 downloaded, 1 already cached, 2 failed" in report.summary()
    assert cache_files(cache) == ["P000030.jpg", "P000031.jpg", "P000032.jpg"]


# -- ChainSource ----------------------------------------------------------------------------------


class FakeSource(PhotoSource):
    def __init__(self, name: str, tablets: dict[str, int], fail: bool = False) -> None:
        self.name, self.tablets, self.fail, self.loaded = name, tablets, fail, []

    def has(self, tablet: str) -> bool:
        return tablet in self.tablets

    def load(self, tablet: str) -> Image.Image:
        self.loaded.append(tablet)
        if self.fail:
            raise ImageLoadError(f"{self.name} broke on {tablet}")
        return Image.new("L", (4, 4), self.tablets[tablet])

    def describe(self) -> str:
        return f"fake {self.name}"


def test_chain_first_source_with_tablet_wins() -> None:
    first = FakeSource("first", {"P1": 1})
    second = FakeSource("second", {"P1": 2, "P2": 2})
    chain = ChainSource([first, second])
    assert chain.load("P1").getpixel((0, 0)) == 1
    assert chain.load("P2").getpixel((0, 0)) == 2
    assert second.loaded == ["P2"]
    assert chain.has("P2") and not chain.has("P3")
    assert chain.describe() == "chain[fake first -> fake second]"


def test_chain_nobody_has_it_lists_sources() -> None:
    chain = ChainSource([FakeSource("a", {}), FakeSource("b", {})])
    with pytest.raises(ImageLoadError) as info:
        chain.load("P3")
    assert "P3" in str(info.value) and "fake a" in str(info.value) and "fake b" in str(info.value)


def test_chain_errors_propagate_unless_fall_through() -> None:
    broken, backup = FakeSource("broken", {"P1": 1}, fail=True), FakeSource("backup", {"P1": 2})
    with pytest.raises(ImageLoadError, match="broken broke"):
        ChainSource([broken, backup]).load("P1")
    assert ChainSource([broken, backup], fall_through=True).load("P1").getpixel((0, 0)) == 2


def test_chain_folder_then_downloader(server: PhotoServer, tmp_path: Path, photo: bytes) -> None:
    local = tmp_path / "local"
    local.mkdir()
    (local / "P000040.jpg").write_bytes(jpeg_bytes(seed=1))
    server.files["P000041.jpg"] = photo
    chain = ChainSource([FolderSource(local), downloader(server, tmp_path / "cache")])
    chain.load("P000040")
    chain.load("P000041")
    assert [path for path, _ in server.requests] == ["/photo/P000041.jpg"]


def test_chain_needs_sources() -> None:
    with pytest.raises(ConfigError):
        ChainSource([])


# -- factory --------------------------------------------------------------------------------------


def test_build_folder_default_and_explicit(tmp_path: Path) -> None:
    (tmp_path / "csdd" / "images").mkdir(parents=True)
    (tmp_path / "photos").mkdir()
    source = build_photo_source("folder", tmp_path)
    assert isinstance(source, FolderSource) and source.root == tmp_path / "csdd" / "images"
    assert build_photo_source("folder", tmp_path, folder="photos").root == tmp_path / "photos"
    other = tmp_path / "elsewhere"
    other.mkdir()
    assert build_photo_source("folder", tmp_path, folder=str(other)).root == other


def test_build_cdli_and_chain(tmp_path: Path) -> None:
    source = build_photo_source("cdli", tmp_path, timeout_s=5, retries=1)
    assert isinstance(source, CdliDownloader)
    assert source.cache_dir == tmp_path / "csdd" / "images_cdli"
    assert (source.timeout_s, source.retries) == (5, 1)
    assert not source.cache_dir.exists()  # created on the first download only
    custom = build_photo_source("cdli", tmp_path, url_template="http://x/{tablet}.jpg")
    assert custom.url_for("P1") == "http://x/P1.jpg"
    # no local folder yet: the downloader alone
    assert isinstance(build_photo_source("folder+cdli", tmp_path), CdliDownloader)
    (tmp_path / "csdd" / "images").mkdir(parents=True)
    chain = build_photo_source("folder+cdli", tmp_path, cache_dir="cache", retries=0)
    assert isinstance(chain, ChainSource)
    assert isinstance(chain.sources[0], FolderSource)
    assert chain.sources[1].cache_dir == tmp_path / "cache"
    # an explicitly configured folder that is missing is an error, not silently skipped
    with pytest.raises(DataNotFoundError):
        build_photo_source("folder+cdli", tmp_path, folder="missing")


def test_build_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        build_photo_source("telepathy", tmp_path)
    assert all(kind in str(info.value) for kind in ("folder", "cdli", "folder+cdli"))
    with pytest.raises(ConfigError, match="Bad options"):
        build_photo_source("cdli", tmp_path, colour="blue")


def test_register_photo_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cuneidet.data import sources

    monkeypatch.setattr(sources, "_REGISTRY", dict(sources._REGISTRY))
    fake = FakeSource("museum", {"P1": 7})

    def factory(data_dir: Path, **_: object) -> PhotoSource:
        return fake

    register_photo_source("museum", factory)
    assert "museum" in photo_source_kinds()
    assert build_photo_source("museum", tmp_path) is fake
    with pytest.raises(ConfigError, match="already registered"):
        register_photo_source("museum", factory)
    register_photo_source("museum", factory, overwrite=True)


def test_only_a_source_that_makes_its_photos_knows_their_true_boxes(tmp_path: Path) -> None:
    source = FolderSource(tmp_path)
    with pytest.raises(ConfigError, match=r"does not know the true sign boxes.*forge"):
        source.truth_segments(["saa01"])

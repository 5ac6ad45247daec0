"""``cuneidet-serve``: bad settings stop it at start; bad uploads get an HTTP status and a reason.

A refused upload leaves nothing in the photo folder; in a batch upload the refused files are
listed (``rejected``) and the others stored. The table of the cases is docs/bad_inputs.md.
"""

from __future__ import annotations

import errno
import io
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.badinput.conftest import Corpus
from tests.badinput.support import read_only_dir, run_hydra_app
from tests.serve_support import add_user, login, make_app, tablet_png


@pytest.fixture
def no_server(monkeypatch):
    """A settings error must stop cuneidet-serve before it listens: never start uvicorn."""
    import uvicorn

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("cuneidet-serve started serving despite bad settings")

    monkeypatch.setattr(uvicorn, "run", refuse)


def _serve(corpus: Corpus, tmp_path: Path, *extra: str):
    return run_hydra_app(
        "serve",
        [f"paths.data_dir={corpus.data}", f"serve.data_dir={tmp_path / 'serve'}", *extra],
        tmp_path / "run",
    )


def test_serve_setting_of_the_wrong_type(corpus, tmp_path, no_server):
    _serve(corpus, tmp_path, "serve.port=http").assert_error(
        2, "serve.port must be a positive number", "'http'"
    )
    assert not (tmp_path / "serve").exists()


def test_serve_setting_misspelt(corpus, tmp_path, no_server):
    _serve(corpus, tmp_path, "+serve.prot=8001").assert_error(
        2, "unknown serve setting(s) ['prot']", "known: ["
    )


def test_serve_data_dir_read_only(corpus, tmp_path, monkeypatch, no_server):
    locked = read_only_dir(tmp_path / "locked", monkeypatch)
    outcome = run_hydra_app(
        "serve",
        [f"paths.data_dir={corpus.data}", f"serve.data_dir={locked}"],
        tmp_path / "run",
    )
    outcome.assert_error(
        2, f"serve.data_dir={locked} cannot be written", "choose a folder the server may write to"
    )
    assert not list(locked.iterdir())


# --------------------------------------------------------------------------- uploads


@pytest.fixture(scope="module")
def alice(tmp_path_factory):
    """A logged-in user of one app for all upload cases (accounts cost a password hash)."""
    app = make_app(tmp_path_factory.mktemp("serve"))
    add_user(app, "alice")
    with TestClient(app) as client:
        login(client, "alice")
        client.app_state = app.state.cuneidet  # type: ignore[attr-defined]
        yield client


def _upload(client: TestClient, *files: tuple[str, bytes, str]):
    collection = client.post("/api/collections", json={"name": "SAA 5"}).json()["id"]
    body = [("files", file) for file in files]
    answer = client.post(f"/api/collections/{collection}/photos", files=body)
    answer.collection = collection  # type: ignore[attr-defined]
    return answer


def _stored(client: TestClient) -> set[str]:
    folder = client.app_state.settings.upload_dir  # type: ignore[attr-defined]
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def test_upload_zero_byte_photo(alice):
    before = _stored(alice)
    answer = _upload(alice, ("scan.png", b"", "image/png"))
    assert answer.status_code == 415
    assert answer.json()["detail"] == "scan.png: the file is empty"
    assert _stored(alice) == before


def test_upload_batch_with_one_truncated_photo(alice):
    before = _stored(alice)
    answer = _upload(
        alice,
        ("good.png", tablet_png(), "image/png"),
        ("cut.png", tablet_png()[:500], "image/png"),
    )
    assert answer.status_code == 201
    body = answer.json()
    assert [p["name"] for p in body["photos"]] == ["good.png"]
    assert len(body["rejected"]) == 1  # the counted skip
    rejected = body["rejected"][0]
    assert rejected["name"] == "cut.png" and rejected["status"] == 415
    assert "cut.png: truncated or corrupt PNG" in rejected["detail"]
    stored = _stored(alice) - before  # the photo, its browser rendition and its thumbnail
    assert len(stored) == 3 and not [name for name in stored if name.startswith(".")]


def test_upload_cmyk_jpeg_is_stored_with_an_rgb_rendition(alice):
    cmyk = io.BytesIO()
    Image.open(io.BytesIO(tablet_png(400, 300))).convert("CMYK").save(cmyk, "JPEG")
    answer = _upload(alice, ("print.jpg", cmyk.getvalue(), "image/jpeg"))
    assert answer.status_code == 201, answer.text
    photo = answer.json()["photos"][0]
    assert photo["format"] == "JPEG" and (photo["width"], photo["height"]) == (400, 300)
    view = Image.open(io.BytesIO(alice.get(f"/api/photos/{photo['id']}/image").content))
    assert view.mode == "RGB" and view.size == (400, 300)


def test_upload_disk_full(alice, monkeypatch):
    from cuneidet.serve import uploads

    real = uploads._write_display

    def fills_up(source: Path, target: Path, max_side: int, shown: str) -> tuple[int, int]:
        if ".thumb." in target.name:  # the last file of an upload: the disk fills up here
            target.write_bytes(b"\xff\xd8\xff half a thumbnail")
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        return real(source, target, max_side, shown)

    monkeypatch.setattr(uploads, "_write_display", fills_up)
    before = _stored(alice)
    answer = _upload(alice, ("tablet.png", tablet_png(), "image/png"))
    assert answer.status_code == 507
    detail = answer.json()["detail"]
    assert "tablet.png: the server's disk is full" in detail
    assert "nothing was stored" in detail and "free space" in detail
    assert _stored(alice) == before
    collection = alice.get(f"/api/collections/{answer.collection}").json()
    assert collection["photo_count"] == 0 and collection["photos"] == []

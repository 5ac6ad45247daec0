"""The web application's HTTP API: accounts, security, uploads, jobs, corrections, exports."""

from __future__ import annotations

import io
import json
import struct
import threading
import zipfile
import zlib
from datetime import timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from cuneidet.serve.app import create_app
from cuneidet.serve.db import Job, Photo, Session, utcnow
from tests.serve_support import (
    PASSWORD,
    add_user,
    grid_model,
    login,
    make_app,
    settings,
    tablet_png,
    wait_for_job,
)


@pytest.fixture()
def app(tmp_path):
    app = make_app(tmp_path)
    add_user(app, "admin", admin=True)
    add_user(app, "alice")
    add_user(app, "bob")
    return app


@pytest.fixture()
def alice(app):
    with TestClient(app) as client:
        login(client, "alice")
        yield client


def _collection(client: TestClient, name: str = "SAA 5") -> int:
    answer = client.post("/api/collections", json={"name": name})
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def _upload(client: TestClient, collection: int, name: str, body: bytes, mime="image/png"):
    return client.post(f"/api/collections/{collection}/photos", files={"files": (name, body, mime)})


def _photo(client: TestClient, collection: int | None = None, name: str = "tablet.png") -> int:
    collection = collection or _collection(client)
    answer = _upload(client, collection, name, tablet_png())
    assert answer.status_code == 201, answer.text
    return answer.json()["photos"][0]["id"]


def _detected(client: TestClient, photo: int, **body) -> dict:
    job = client.post(f"/api/photos/{photo}/detect", json=body)
    assert job.status_code == 202, job.text
    return wait_for_job(client, job.json()["id"])


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width``×``height`` (a decompression bomb's first bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


# --------------------------------------------------------------------------- accounts


def test_first_run_setup_creates_the_administrator(tmp_path):
    app = make_app(tmp_path)
    token = app.state.cuneidet.setup_token
    with TestClient(app) as client:
        assert client.get("/api/status").json()["setup_required"] is True
        body = {"token": "wrong", "username": "root", "password": PASSWORD}
        assert client.post("/api/setup", json=body).status_code == 403
        weak = {"token": token, "username": "root", "password": "short"}
        assert "at least 8" in client.post("/api/setup", json=weak).json()["detail"]
        answer = client.post("/api/setup", json={**body, "token": token})
        assert answer.status_code == 201
        assert answer.json()["user"] == {"id": 1, "username": "root", "is_admin": True}
        assert client.get("/api/status").json()["setup_required"] is False
        assert client.get("/api/session").json()["user"]["username"] == "root"
        assert client.post("/api/setup", json={**body, "token": token}).status_code == 409


def test_login_sets_a_hardened_cookie_and_refuses_wrong_passwords(app):
    with TestClient(app) as client:
        wrong = client.post("/api/login", json={"username": "alice", "password": "nope-nope"})
        assert wrong.status_code == 401 and "wrong user name or password" in wrong.json()["detail"]
        unknown = client.post("/api/login", json={"username": "zoe", "password": PASSWORD})
        assert unknown.status_code == 401
        answer = client.post("/api/login", json={"username": "alice", "password": PASSWORD})
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
        assert client.get("/api/session").json()["user"]["username"] == "alice"
        client.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
        assert client.post("/api/logout").status_code == 204
        assert client.get("/api/session").status_code == 401


def test_cookies_are_secure_when_configured_for_tls(tmp_path):
    app = make_app(tmp_path, secure_cookies=True)
    add_user(app, "alice")
    with TestClient(app) as client:
        answer = client.post("/api/login", json={"username": "alice", "password": PASSWORD})
        assert "secure" in answer.headers["set-cookie"].lower()


def test_login_is_rate_limited(app):
    with TestClient(app) as client:
        for _ in range(5):
            client.post("/api/login", json={"username": "alice", "password": "bad-password"})
        blocked = client.post("/api/login", json={"username": "alice", "password": PASSWORD})
        assert blocked.status_code == 429
        assert int(blocked.headers["retry-after"]) > 0
        assert "too many failed logins" in blocked.json()["detail"]


def test_expired_session_answers_401(app, alice):
    with app.state.cuneidet.sessions() as db:
        for row in db.scalars(select(Session)):
            row.expires_at = utcnow() - timedelta(minutes=1)
        db.commit()
    answer = alice.get("/api/collections")
    assert answer.status_code == 401 and "expired" in answer.json()["detail"]


def test_state_changes_need_the_csrf_token_and_the_same_origin(alice):
    token = alice.headers.pop("X-CSRF-Token")
    missing = alice.post("/api/collections", json={"name": "x"})
    assert missing.status_code == 403 and "X-CSRF-Token" in missing.json()["detail"]
    wrong = alice.post("/api/collections", json={"name": "x"}, headers={"X-CSRF-Token": "f" * 43})
    assert wrong.status_code == 403
    foreign = alice.post(
        "/api/collections",
        json={"name": "x"},
        headers={"X-CSRF-Token": token, "Origin": "https://evil.example"},
    )
    assert foreign.status_code == 403 and "cross-origin" in foreign.json()["detail"]
    same = alice.post(
        "/api/collections",
        json={"name": "x"},
        headers={"X-CSRF-Token": token, "Origin": "http://testserver"},
    )
    assert same.status_code == 201


def test_admin_creates_and_disables_users(app):
    with TestClient(app) as admin, TestClient(app) as carol:
        login(admin, "admin")
        assert (
            admin.post("/api/users", json={"username": "carol", "password": PASSWORD}).status_code
            == 201
        )
        taken = admin.post("/api/users", json={"username": "carol", "password": PASSWORD})
        assert taken.status_code == 409
        bad = admin.post("/api/users", json={"username": "../x", "password": PASSWORD})
        assert bad.status_code == 400
        carol_id = login(carol, "carol") and carol.get("/api/session").json()["user"]["id"]
        assert carol.get("/api/users").status_code == 403  # not an admin
        assert (
            admin.patch(f"/api/users/{carol_id}", json={"is_active": False}).json()["is_active"]
            is False
        )
        assert carol.get("/api/collections").status_code == 401  # logged out
        again = carol.post("/api/login", json={"username": "carol", "password": PASSWORD})
        assert again.status_code == 403 and "disabled" in again.json()["detail"]
        me = admin.get("/api/session").json()["user"]["id"]
        assert admin.patch(f"/api/users/{me}", json={"is_active": False}).status_code == 400
        names = [u["username"] for u in admin.get("/api/users").json()]
        assert names == ["admin", "alice", "bob", "carol"]


def test_another_users_objects_answer_404(app, alice):
    collection = _collection(alice)
    photo = _photo(alice, collection)
    job = _detected(alice, photo)
    sign = alice.get(f"/api/photos/{photo}/signs").json()[0]["id"]
    with TestClient(app) as bob:
        login(bob, "bob")
        assert bob.get("/api/collections").json() == []
        attempts = [
            ("get", f"/api/collections/{collection}", None),
            ("delete", f"/api/collections/{collection}", None),
            ("get", f"/api/collections/{collection}/counts", None),
            ("get", f"/api/collections/{collection}/export?format=csv", None),
            ("get", f"/api/photos/{photo}", None),
            ("patch", f"/api/photos/{photo}", {"scale": 2.0}),
            ("delete", f"/api/photos/{photo}", None),
            ("get", f"/api/photos/{photo}/image", None),
            ("get", f"/api/photos/{photo}/thumbnail", None),
            ("post", f"/api/photos/{photo}/detect", {}),
            ("get", f"/api/photos/{photo}/signs", None),
            (
                "post",
                f"/api/photos/{photo}/signs",
                {"x1": 1, "y1": 1, "x2": 9, "y2": 9, "label": 1},
            ),
            ("get", f"/api/photos/{photo}/export?format=png", None),
            ("patch", f"/api/signs/{sign}", {"label": 2}),
            ("delete", f"/api/signs/{sign}", None),
            ("get", f"/api/jobs/{job['id']}", None),
        ]
        for method, url, body in attempts:
            kwargs = {"json": body} if body is not None else {}
            answer = bob.request(method.upper(), url, **kwargs)
            assert answer.status_code == 404, (method, url, answer.status_code)
        files = {"files": ("x.png", tablet_png(), "image/png")}
        assert bob.post(f"/api/collections/{collection}/photos", files=files).status_code == 404
    assert alice.get(f"/api/photos/{photo}").json()["sign_count"] > 0  # untouched


# --------------------------------------------------------------------------- uploads


def test_upload_accepts_jpeg_png_and_16_bit_tiff(alice):
    collection = _collection(alice)
    jpeg, tiff = io.BytesIO(), io.BytesIO()
    Image.open(io.BytesIO(tablet_png())).save(jpeg, "JPEG")
    ramp = (np.arange(300 * 200, dtype=np.uint16).reshape(200, 300) * 17) % 65535
    Image.fromarray(ramp.astype(np.uint16)).save(tiff, "TIFF")
    files = [
        ("files", ("a.png", tablet_png(), "image/png")),
        ("files", ("b.jpeg", jpeg.getvalue(), "image/jpeg")),
        ("files", ("c.tif", tiff.getvalue(), "image/tiff")),
    ]
    answer = alice.post(f"/api/collections/{collection}/photos", files=files)
    assert answer.status_code == 201
    photos = answer.json()["photos"]
    assert [p["format"] for p in photos] == ["PNG", "JPEG", "TIFF"]
    tiff_id = photos[2]["id"]
    view = Image.open(io.BytesIO(alice.get(f"/api/photos/{tiff_id}/image").content))
    assert view.format == "JPEG" and view.size == (300, 200)
    thumb = Image.open(io.BytesIO(alice.get(f"/api/photos/{tiff_id}/thumbnail").content))
    assert thumb.size == (160, 107)
    assert np.asarray(view.convert("L")).std() > 10  # stretched, not clipped to white


@pytest.mark.parametrize(
    ("name", "body", "status", "message"),
    [
        ("notes.jpg", b"just some text, not a photo\n" * 10, 415, "not a JPEG, PNG or TIFF"),
        ("empty.png", b"", 415, "empty"),
        ("cut.png", tablet_png()[:400], 415, "truncated or corrupt"),
        ("bomb.png", _png_header_only(30_000, 30_000), 413, "serve.max_pixels"),
        ("large.png", _png_header_only(5_000, 5_000), 413, "5000×5000 = 25.0 MP exceeds"),
    ],
)
def test_upload_refuses_bad_files_with_a_reason(app, alice, name, body, status, message):
    collection = _collection(alice)
    answer = _upload(alice, collection, name, body)
    assert answer.status_code == status and message in answer.json()["detail"]
    assert name in answer.json()["detail"]
    folder = app.state.cuneidet.settings.upload_dir
    assert not folder.exists() or list(folder.iterdir()) == []  # nothing half-written


def test_several_refused_files_answer_with_their_common_status(alice):
    collection = _collection(alice)
    bombs = [("files", (f"{n}.png", _png_header_only(9_000, 9_000), "image/png")) for n in "ab"]
    both = alice.post(f"/api/collections/{collection}/photos", files=bombs)
    assert both.status_code == 413 and "a.png" in both.json()["detail"]
    mixed = [bombs[0], ("files", ("c.jpg", b"text", "image/jpeg"))]
    answer = alice.post(f"/api/collections/{collection}/photos", files=mixed)
    assert answer.status_code == 400 and "c.jpg" in answer.json()["detail"]


def test_upload_over_the_byte_limit_is_refused_before_or_while_reading(tmp_path):
    app = make_app(tmp_path, max_upload_bytes=200_000)
    add_user(app, "alice")
    with TestClient(app) as client:
        login(client, "alice")
        collection = _collection(client)
        big = _upload(client, collection, "big.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 3_000_000)
        assert big.status_code == 413 and "larger than the limit" in big.json()["detail"]
        huge = client.post(
            f"/api/collections/{collection}/photos",
            content=b"x",
            headers={"Content-Length": str(2 * 1024**3), "Content-Type": "multipart/form-data"},
        )
        assert huge.status_code == 413

        def chunks():
            yield b'--b\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n\r\n'
            for _ in range(40):
                yield b"\0" * 65536

        streamed = client.post(
            f"/api/collections/{collection}/photos",
            content=chunks(),
            headers={"Content-Type": "multipart/form-data; boundary=b"},
        )
        assert streamed.status_code == 413
        assert client.get("/api/collections").status_code == 200  # still serving


def test_upload_names_never_reach_the_file_system(app, alice):
    collection = _collection(alice)
    answer = _upload(alice, collection, "../../etc/passwd", tablet_png())
    photo = answer.json()["photos"][0]
    assert photo["name"] == "passwd"
    folder = app.state.cuneidet.settings.upload_dir
    stored = sorted(p.name for p in folder.iterdir())
    assert len(stored) == 3 and all(len(name.split(".")[0]) == 32 for name in stored)
    assert alice.get("/static/..%2f..%2fetc%2fpasswd").status_code == 404
    assert alice.get("/static/%2e%2e/app.py").status_code == 404


# --------------------------------------------------------------------------- jobs


def test_detection_job_finds_signs_with_top_k_and_lines(alice):
    photo = _photo(alice)
    job = _detected(alice, photo)
    assert job["status"] == "done" and job["progress"] == 1.0 and job["attempts"] == 1
    details = alice.get(f"/api/photos/{photo}").json()
    assert details["status"] == "done" and details["scale_auto"] == pytest.approx(0.8, rel=0.1)
    signs = alice.get(f"/api/photos/{photo}/signs").json()
    assert len(signs) == details["sign_count"] > 10
    sign = signs[0]
    assert next(t["label"] for t in sign["topk"]) == sign["label"]
    assert 1 <= len(sign["topk"]) <= 5 and sign["glyph"] and sign["mzl"] > 100
    assert sorted({s["line"] for s in signs}) == list(range(1, max(s["line"] for s in signs) + 1))
    manual = _detected(alice, photo, scale=1.0)
    assert alice.get(f"/api/photos/{photo}").json()["scale_used"] == 1.0
    assert manual["message"].endswith("at scale 1.00")


def test_jobs_queue_and_a_second_job_for_a_photo_is_refused(tmp_path):
    app = create_app(settings(tmp_path), loader=grid_model, start_worker=False)
    add_user(app, "alice")
    with TestClient(app) as client:
        login(client, "alice")
        collection = _collection(client)
        first, second = _photo(client, collection), _photo(client, collection, "b.png")
        assert client.post(f"/api/photos/{first}/detect", json={}).status_code == 202
        assert client.post(f"/api/photos/{second}/detect", json={}).status_code == 202
        again = client.post(f"/api/photos/{first}/detect", json={})
        assert again.status_code == 409
        statuses = [j["status"] for j in client.get("/api/jobs").json()]
        assert statuses == ["queued", "queued"]


def _interrupted_job(tmp_path, attempts: int) -> tuple[int, int]:
    """A photo and its detection job left ``running`` after ``attempts`` tries, as a server
    killed mid-job leaves them (its worker never ran)."""
    app = create_app(settings(tmp_path), loader=grid_model, start_worker=False)
    add_user(app, "alice")
    with TestClient(app) as client:
        login(client, "alice")
        photo = _photo(client)
        job = client.post(f"/api/photos/{photo}/detect", json={}).json()["id"]
    with app.state.cuneidet.sessions() as db:
        row = db.get(Job, job)
        row.status, row.attempts, row.progress = "running", attempts, 0.35
        db.commit()
    return photo, job


def test_a_server_restart_resumes_unfinished_jobs(tmp_path):
    photo, job = _interrupted_job(tmp_path, attempts=1)
    with TestClient(make_app(tmp_path)) as client:
        login(client, "alice")
        finished = wait_for_job(client, job)
        assert finished["status"] == "done" and finished["attempts"] == 2
        assert client.get(f"/api/photos/{photo}").json()["sign_count"] > 0


def test_a_job_interrupted_too_often_fails_with_its_reason(tmp_path):
    _, job = _interrupted_job(tmp_path, attempts=3)
    with TestClient(make_app(tmp_path)) as client:
        login(client, "alice")
        failed = client.get(f"/api/jobs/{job}").json()
        assert failed["status"] == "failed" and "interrupted 3 times" in failed["error"]


def test_a_model_that_fails_to_load_fails_jobs_clearly_and_the_server_goes_on(tmp_path):
    queued = threading.Event()

    def broken():
        from cuneidet.errors import ModelFileError

        queued.wait(30)  # fail only once a job waits for the model
        raise ModelFileError("/models/sign.onnx is not an ONNX model; re-export it")

    app = make_app(tmp_path, loader=broken)
    add_user(app, "alice")
    with TestClient(app) as client:
        login(client, "alice")
        photo = _photo(client)
        answer = client.post(f"/api/photos/{photo}/detect", json={})
        queued.set()
        job = wait_for_job(client, answer.json()["id"])
        assert job["status"] == "failed" and "re-export" in job["error"]
        status = client.get("/api/status").json()["model"]
        assert status["ready"] is False and "failed to load" in status["error"]
        refused = client.post(f"/api/photos/{photo}/detect", json={})
        assert refused.status_code == 503 and "re-export" in refused.json()["detail"]
        assert client.get(f"/api/photos/{photo}").json()["status"] == "failed"


def test_a_job_that_fails_on_its_photo_does_not_stop_the_queue(app, alice):
    collection = _collection(alice)
    broken, good = _photo(alice, collection), _photo(alice, collection, "good.png")
    with app.state.cuneidet.sessions() as db:
        stored = db.get(Photo, broken)
        path = app.state.cuneidet.settings.upload_dir / f"{stored.stored_name}.png"
    path.write_bytes(b"damaged on disk")
    failed = _detected(alice, broken)
    assert failed["status"] == "failed" and "cannot load photo" in failed["error"]
    assert _detected(alice, good)["status"] == "done"


# --------------------------------------------------------------------------- corrections


def test_corrections_are_stored_and_survive_a_new_detection(alice):
    photo = _photo(alice)
    _detected(alice, photo)
    signs = alice.get(f"/api/photos/{photo}/signs").json()
    first, second = signs[0], signs[1]
    assert alice.delete(f"/api/signs/{first['id']}").status_code == 204
    changed = alice.patch(f"/api/signs/{second['id']}", json={"label": 7}).json()
    assert changed["label"] == 7 and changed["name"] == "É" and changed["edited"] is True
    assert alice.patch(f"/api/signs/{second['id']}", json={"label": 999}).status_code == 400
    drawn = alice.post(
        f"/api/photos/{photo}/signs", json={"x1": 850, "y1": 600, "x2": 820, "y2": 660, "label": 3}
    ).json()
    assert drawn["source"] == "user" and drawn["score"] == 1.0
    assert (drawn["x1"], drawn["x2"], drawn["y2"]) == (820, 850, 660)  # corners ordered
    clipped = {"x1": 880, "y1": 650, "x2": 990, "y2": 720, "label": 3}
    edge = alice.post(f"/api/photos/{photo}/signs", json=clipped).json()
    assert (edge["x2"], edge["y2"]) == (900, 700)  # clipped to the photo
    tiny = {"x1": 5, "y1": 5, "x2": 6, "y2": 6, "label": 3}
    assert alice.post(f"/api/photos/{photo}/signs", json=tiny).status_code == 400
    _detected(alice, photo)  # a new run replaces only the untouched model signs
    after = {s["id"]: s for s in alice.get(f"/api/photos/{photo}/signs").json()}
    assert first["id"] not in after and after[second["id"]]["label"] == 7 and drawn["id"] in after
    boxes = [(s["x1"], s["y1"]) for s in after.values()]
    assert (first["x1"], first["y1"]) not in boxes  # the deleted sign did not come back
    assert alice.delete(f"/api/signs/{first['id']}").status_code == 404


# --------------------------------------------------------------------------- exports


def test_exports_of_a_photo_and_a_collection(alice):
    collection = _collection(alice)
    photo = _photo(alice, collection)
    _detected(alice, photo)
    signs = alice.get(f"/api/photos/{photo}/signs").json()
    strong = sum(s["score"] >= 0.5 for s in signs)
    csv_text = alice.get(f"/api/photos/{photo}/export?format=csv&min_score=0.5").text
    lines = csv_text.strip().splitlines()
    assert lines[0].startswith("imageName, folder, image_path, mzl_label, train_label, x1")
    assert len(lines) == 1 + strong and lines[1].startswith("tablet, , , 1")
    coco = alice.get(f"/api/photos/{photo}/export?format=coco").json()
    assert len(coco["annotations"]) == len(signs) and coco["images"][0]["width"] == 900
    assert {c["name"] for c in coco["categories"]} >= {"AŠ", "É"}
    png = alice.get(f"/api/photos/{photo}/export?format=png")
    assert png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (800, 622)
    counts = alice.get(f"/api/collections/{collection}/counts").json()
    assert (
        sum(c["count"] for c in counts) == len(signs) and counts[0]["count"] >= counts[-1]["count"]
    )
    table = alice.get(f"/api/collections/{collection}/export?format=counts").text.splitlines()
    assert table[0] == "label,name,mzl,glyph,count" and len(table) == 1 + len(counts)
    archive = alice.get(f"/api/collections/{collection}/export?format=png")
    assert zipfile.ZipFile(io.BytesIO(archive.content)).namelist() == ["tablet.png"]
    unknown = alice.get(f"/api/collections/{collection}/export?format=xlsx")
    assert unknown.status_code == 400 and "choose from" in unknown.json()["detail"]
    refused = alice.get(f"/api/collections/{collection}/export?format=training")
    assert refused.status_code == 409 and "reviewed" in refused.json()["detail"]


def test_pages_fonts_and_security_headers(tmp_path):
    font = tmp_path / "font.ttf"
    font.write_bytes(b"\0\1\0\0font")
    app = make_app(tmp_path, font_file=font)
    with TestClient(app) as client:
        page = client.get("/")
        assert page.status_code == 200 and "<html" in page.text.lower()
        assert page.headers["x-content-type-options"] == "nosniff"
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert client.get("/font/cuneiform.ttf").content == font.read_bytes()
    with TestClient(make_app(tmp_path / "other")) as client:
        assert client.get("/font/cuneiform.ttf").status_code == 404


def test_request_bodies_that_are_not_json_objects_get_422(alice):
    answer = alice.post(
        "/api/collections", content=b"{", headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 422
    big = alice.post("/api/collections", json={"name": "x" * (2 << 20)})
    assert big.status_code == 413
    assert json.loads(alice.get("/api/collections").text) == []

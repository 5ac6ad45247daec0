"""The web app with a real exported model in ONNX Runtime, model choice, and its CLI."""

from __future__ import annotations

import os
import time

import pytest
from fastapi.testclient import TestClient
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from cuneidet.cli.serve import create_admin, serve_settings
from cuneidet.config import config_dir
from cuneidet.errors import ConfigError, DataNotFoundError
from cuneidet.serve.app import create_app
from cuneidet.serve.detection import resolve_model_file
from cuneidet.serve.settings import ServeSettings
from tests.serve_support import add_user, login, tablet_png, wait_for_job


@pytest.fixture(scope="module")
def export(onnx_exports, tmp_path_factory):
    """The session's tiny two-stage export, alone in a folder, as ``sign.*``."""
    folder = tmp_path_factory.mktemp("models")
    for path in onnx_exports[0].glob("two.*"):
        (folder / path.name.replace("two.", "sign.", 1)).write_bytes(path.read_bytes())
    return folder / "sign.onnx"


def _wait_for_model(client: TestClient) -> dict:
    for _ in range(200):
        model = client.get("/api/status").json()["model"]
        if model["ready"] or model["error"]:
            return model
        time.sleep(0.05)
    raise AssertionError("the model neither loaded nor failed")


def test_the_app_detects_with_an_exported_recogniser(tmp_path, export):
    settings = ServeSettings(data_dir=tmp_path / "serve", search_dir=export.parent, threads=1)
    app = create_app(settings)
    add_user(app, "alice")
    with TestClient(app) as client:
        model = _wait_for_model(client)
        assert model == {
            "ready": True,
            "error": None,
            "loading": False,
            "name": "sign.onnx",
            "kind": "two_stage",
            "num_classes": 7,
        }
        login(client, "alice")
        assert [c["name"] for c in client.get("/api/classes").json()] == [
            f"sign_{c}" for c in range(1, 7)
        ]
        collection = client.post("/api/collections", json={"name": "x"}).json()["id"]
        files = {"files": ("t.png", tablet_png(400, 300), "image/png")}
        photo = client.post(f"/api/collections/{collection}/photos", files=files).json()
        job = client.post(f"/api/photos/{photo['photos'][0]['id']}/detect", json={"scale": 1.0})
        done = wait_for_job(client, job.json()["id"])
        assert done["status"] == "done", done
        signs = client.get(f"/api/photos/{photo['photos'][0]['id']}/signs").json()
        assert signs, "a random recogniser still names boxes"
        assert all(1 <= len(s["topk"]) <= 5 and s["name"].startswith("sign_") for s in signs)
        assert all(s["score"] >= settings.min_score for s in signs)


def test_a_damaged_model_file_is_reported_and_the_server_goes_on(tmp_path, export):
    broken = tmp_path / "models" / "sign.onnx"
    broken.parent.mkdir()
    for path in export.parent.iterdir():
        (broken.parent / path.name).write_bytes(path.read_bytes())
    broken.write_bytes(b"not an onnx graph")
    app = create_app(ServeSettings(data_dir=tmp_path / "serve", model_file=broken))
    add_user(app, "alice")
    with TestClient(app) as client:
        model = _wait_for_model(client)
        assert (
            model["ready"] is False
            and "SHA-256" in model["error"]
            and "re-export" in model["error"]
        )
        login(client, "alice")
        assert client.get("/api/collections").status_code == 200


def test_the_newest_export_is_served_when_none_is_named(tmp_path, export):
    older, newer = tmp_path / "runs" / "a", tmp_path / "runs" / "b"
    for folder, stamp in ((older, 1_000_000), (newer, 2_000_000)):
        folder.mkdir(parents=True)
        for path in export.parent.iterdir():
            (folder / path.name).write_bytes(path.read_bytes())
            os.utime(folder / path.name, (stamp, stamp))
    settings = ServeSettings(data_dir=tmp_path / "serve", search_dir=tmp_path / "runs")
    assert resolve_model_file(settings) == newer / "sign.onnx"
    with pytest.raises(DataNotFoundError, match="make train"):
        resolve_model_file(ServeSettings(data_dir=tmp_path, search_dir=tmp_path / "serve"))
    with pytest.raises(DataNotFoundError, match="does not exist"):
        resolve_model_file(ServeSettings(data_dir=tmp_path, model_file=tmp_path / "none.onnx"))


def _serve_config(overrides):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose(config_name="serve", overrides=overrides, return_hydra_config=True)


def test_create_admin_from_the_command_line(tmp_path, monkeypatch):
    cfg = _serve_config([f"serve.data_dir={tmp_path}", "create_admin=root", "serve.port=8123"])
    settings = serve_settings(cfg)
    assert settings.port == 8123 and settings.data_dir == tmp_path
    monkeypatch.setenv("CUNEIDET_ADMIN_PASSWORD", "a long enough password")
    create_admin(settings, "root")
    with pytest.raises(ConfigError, match="taken"):
        create_admin(settings, "root")
    monkeypatch.setenv("CUNEIDET_ADMIN_PASSWORD", "short")
    with pytest.raises(ConfigError, match="at least 8"):
        create_admin(settings, "other")
    app = create_app(settings, start_worker=False)
    with TestClient(app) as client:
        assert client.get("/api/status").json()["setup_required"] is False
        login(client, "root", "a long enough password")
        assert client.get("/api/session").json()["user"]["is_admin"] is True

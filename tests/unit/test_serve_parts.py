"""Pieces of the web app below the HTTP layer: grouping detections into signs, text lines,
settings, database versions, uploads and the training export."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from cuneidet.data.csdd import CSDD
from cuneidet.data.views import annotated_segments
from cuneidet.errors import ConfigError, UploadRejectedError
from cuneidet.serve.db import SCHEMA_VERSION, open_database
from cuneidet.serve.detection import assign_lines, group_signs, nearest_line
from cuneidet.serve.settings import ServeSettings
from cuneidet.serve.uploads import display_name, store_upload
from tests.fixtures_csdd import make_tiny_csdd
from tests.serve_support import add_user, login, make_app, tablet_png, wait_for_job


def _rows(rows):
    return pd.DataFrame(rows, columns=["x1", "y1", "x2", "y2", "train_label", "det_score"])


def test_group_signs_merges_the_classes_of_one_box_and_keeps_top_k():
    frame = _rows(
        [
            [0, 0, 10, 10, 3, 0.9],
            [0, 0, 10, 10, 5, 0.3],
            [0.5, 0, 10.5, 10, 7, 0.2],  # a near-identical box of a one-stage detector
            [0, 0, 10, 10, 3, 0.1],  # the same class again: not listed twice
            [20, 0, 30, 10, 2, 0.8],
            [0, 0, 10, 10, 9, 0.05],
        ]
    )
    signs = group_signs(frame, top_k=3)
    assert len(signs) == 2
    first, second = signs
    assert first["label"] == 3 and first["score"] == pytest.approx(0.9)
    assert [label for label, _ in first["topk"]] == [3, 5, 7]
    assert second["label"] == 2 and second["topk"] == [[2, 0.8]]
    assert group_signs(_rows([]), 5) == []


def test_assign_lines_numbers_rows_top_to_bottom():
    boxes = []
    for row, y in enumerate((300, 100, 200)):  # rows given out of order
        for x in range(0, 500, 60):
            boxes.append([x, y + row * 3, x + 50, y + 50 + row * 3])
    boxes.append([1000, 900, 1050, 950])  # far below every row
    boxes = np.array(boxes, float)
    lines = assign_lines(boxes, np.ones(len(boxes)))
    assert set(lines[:9]) == {3} and set(lines[9:18]) == {1} and set(lines[18:27]) == {2}
    assert lines[-1] == 0 or lines[-1] == 4
    assert nearest_line(boxes[:27], lines[:27], np.array([600.0, 105, 650, 155])) == 1
    assert nearest_line(boxes[:27], lines[:27], np.array([600.0, 700, 650, 750])) == 0
    assert assign_lines(np.zeros((0, 4)), np.zeros(0)).shape == (0,)


def test_settings_from_config_are_checked():
    settings = ServeSettings.from_mapping(
        {"data_dir": "/tmp/x", "model_file": "", "recogniser": {"top_k": None, "max_boxes": 9}}
    )
    assert settings.model_file is None and dict(settings.recogniser) == {"max_boxes": 9}
    with pytest.raises(ConfigError, match="unknown serve setting"):
        ServeSettings.from_mapping({"data_dir": "/tmp/x", "prot": 1})
    with pytest.raises(ConfigError, match="data_dir is required"):
        ServeSettings.from_mapping({"data_dir": None})
    with pytest.raises(ConfigError, match=r"serve\.workers must be positive"):
        ServeSettings.from_mapping({"data_dir": "/tmp/x", "workers": 0})


def test_a_database_from_a_newer_cuneidet_is_refused(tmp_path):
    path = tmp_path / "db.sqlite"
    sessions = open_database(path)
    with sessions.begin() as db:
        db.execute(
            text("UPDATE meta SET value = :v WHERE key = 'schema'"), {"v": SCHEMA_VERSION + 1}
        )
    with pytest.raises(ConfigError, match="newer than this cuneidet"):
        open_database(path)


def test_display_names_drop_paths_and_control_characters():
    assert display_name("../../etc/passwd") == "passwd"
    assert display_name("C:\\photos\\K 1.jpg") == "K 1.jpg"
    assert display_name("a\x00b\nc.png") == "abc.png"
    assert display_name(None) == display_name("") == "photo"


def test_store_upload_writes_both_files_or_nothing(tmp_path):
    stored = store_upload(io.BytesIO(tablet_png()), "t.png", tmp_path, 10**7, 10**7, 500)
    assert (stored.width, stored.height, stored.display_width) == (900, 700, 500)
    names = sorted(p.name.split(".", 1)[1] for p in tmp_path.iterdir())
    assert names == ["png", "thumb.jpg", "view.jpg"]
    with pytest.raises(UploadRejectedError) as error:
        store_upload(io.BytesIO(tablet_png()), "t.png", tmp_path, 1000, 10**7, 500)
    assert error.value.status_code == 413
    assert len(list(tmp_path.iterdir())) == 3  # the refused upload left nothing


def test_training_export_is_a_box_set_the_data_layer_reads(tmp_path):
    app = make_app(tmp_path)
    add_user(app, "alice")
    with TestClient(app) as client:
        login(client, "alice")
        collection = client.post("/api/collections", json={"name": "web"}).json()["id"]
        files = [("files", (n, tablet_png(seed=i), "image/png")) for i, n in enumerate("ab")]
        photos = client.post(f"/api/collections/{collection}/photos", files=files).json()["photos"]
        for photo in photos:
            job = client.post(f"/api/photos/{photo['id']}/detect", json={"scale": 1.0}).json()
            assert wait_for_job(client, job["id"])["status"] == "done"
        first = photos[0]["id"]
        signs = client.get(f"/api/photos/{first}/signs").json()
        weak = [s for s in signs if s["score"] < 0.5]
        client.patch(f"/api/signs/{weak[0]['id']}", json={"label": 4})  # corrected: kept
        client.delete(f"/api/signs/{signs[0]['id']}")  # deleted: left out
        client.post(
            f"/api/photos/{first}/signs", json={"x1": 5, "y1": 5, "x2": 60, "y2": 70, "label": 2}
        )
        client.patch(f"/api/photos/{first}", json={"reviewed": True, "review_threshold": 0.5})
        archive = client.get(f"/api/collections/{collection}/export?format=training")
    assert archive.status_code == 200
    expected = sum(s["score"] >= 0.5 for s in signs[1:]) + 2
    data_dir = make_tiny_csdd(tmp_path / "data")
    zipfile.ZipFile(io.BytesIO(archive.content)).extractall(data_dir)
    csdd = CSDD(data_dir)
    name = f"web_{collection}"
    assert name in csdd.box_sets and name in csdd.collections
    boxes = csdd.boxes(name)
    assert len(boxes) == expected and set(boxes["tablet_CDLI"]) == {f"web{collection}-{first}"}
    assert {2, 4} <= set(boxes["train_label"]) and (boxes["mzl_label"] > 100).all()
    segments = annotated_segments(csdd, [name])
    assert len(segments) == 1 and segments[0].scale == 1.0 and len(segments[0].boxes) == expected
    photo_file = data_dir / "csdd" / "images" / f"web{collection}-{first}.png"
    assert photo_file.is_file()

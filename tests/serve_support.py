"""Helpers for the web-app tests: a stand-in detector, an app on a temporary folder, accounts.

``make_app(tmp_path)`` builds the real app (database, uploads, job worker) with
:class:`GridDetector` as its detector, so tests run the app's own detection code path
(:func:`cuneidet.serve.detection.detect_photo`: scale estimation, tiling, grouping, lines)
without a trained model.
"""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw

from cuneidet.deploy.runtime import InferenceModel
from cuneidet.models.classifier import SignClassifierNet
from cuneidet.oracle.module import OracleClassifier
from cuneidet.oracle.predict import OracleModel
from cuneidet.serve.app import create_app
from cuneidet.serve.db import User
from cuneidet.serve.detection import LoadedModel, SignClass
from cuneidet.serve.security import hash_password
from cuneidet.serve.settings import ServeSettings

PASSWORD = "correct horse battery"
NUM_CLASSES = 8
CLASSES = {
    label: SignClass(label, name, 100 + label, glyph)
    for label, name, glyph in [
        (1, "AŠ", "𒀸"),
        (2, "DIŠ", "𒁹"),
        (3, "KUR", "𒆳"),
        (4, "MAN", "𒎙"),
        (5, "NA", "𒈾"),
        (6, "ŠÚ", "𒋙"),
        (7, "É", "𒂍"),
    ]
}


class GridDetector:
    """Finds a regular grid of 'signs' (≈128 px at the working scale, rows 160 px apart) on any
    image, each named with its top-3 classes like a two-stage recogniser's output."""

    sign_height = 128.0
    num_classes = NUM_CLASSES
    crop_size = 64
    context = 1.3

    def __init__(self) -> None:
        torch.manual_seed(1)  # an untrained sign classifier: the draw page's cuneiform mode
        self.classifier = SignClassifierNet(NUM_CLASSES, variant="lite0", pretrained=False).eval()

    def detect(self, images: torch.Tensor, score_thresh: float = 0.0, **_: Any) -> list[dict]:
        results = []
        for image in images:
            height, width = image.shape[-2:]
            boxes, scores, labels = [], [], []
            index = 0
            for y in range(16, height - 128, 160):
                for x in range(16, width - 120, 140):
                    box = [float(x), float(y), float(x + 112), float(y + 128)]
                    best = 0.95 - 0.6 * ((index * 7) % 10) / 10
                    for rank, share in enumerate((1.0, 0.2, 0.05)):
                        boxes.append(box)
                        scores.append(best * share)
                        labels.append((index + rank) % (NUM_CLASSES - 1) + 1)
                    index += 1
            keep = np.asarray(scores) > score_thresh
            results.append(
                {
                    "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)[keep],
                    "scores": torch.tensor(scores, dtype=torch.float32)[keep],
                    "labels": torch.tensor(labels, dtype=torch.int64)[keep],
                }
            )
        return results


def grid_model() -> LoadedModel:
    model = InferenceModel(
        detector=GridDetector(),
        inference={"score_thresh": 0.01, "nms_thresh": 0.5},
        num_classes=NUM_CLASSES,
        runtime="onnx",
        source="grid",
        scale_auto={"reference_pitch": 1.25},  # the grid's row pitch (160 px / 128 px)
    )
    return LoadedModel(model, Path("grid.onnx"), "two_stage", dict(CLASSES))


#: the stand-in oracle model's characters
ORACLE_CHARSET = list("人大天王日月木水火土山田")


def tiny_oracle() -> OracleModel:
    """An untrained oracle-bone classifier over :data:`ORACLE_CHARSET` (well-formed rankings)."""
    torch.manual_seed(0)
    net = SignClassifierNet(num_classes=len(ORACLE_CHARSET), variant="lite0", pretrained=False)
    module = OracleClassifier(net, optimizer=torch.optim.AdamW).eval()
    return OracleModel(module, list(ORACLE_CHARSET), 64, Path("tiny_oracle.ckpt"))


def settings(tmp_path: Path, **overrides: Any) -> ServeSettings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "serve",
        "threads": 1,
        "display_max_side": 800,
        "max_upload_bytes": 4 * 1024 * 1024,
        "max_pixels": 20_000_000,
    }
    values.update(overrides)
    return ServeSettings(**values)


def make_app(
    tmp_path: Path, loader: Any = grid_model, oracle_loader: Any = tiny_oracle, **overrides: Any
) -> FastAPI:
    return create_app(settings(tmp_path, **overrides), loader=loader, oracle_loader=oracle_loader)


def add_user(app: FastAPI, username: str, admin: bool = False, password: str = PASSWORD) -> int:
    state = app.state.cuneidet
    with state.sessions() as db:
        user = User(username=username, password_hash=hash_password(password), is_admin=admin)
        db.add(user)
        db.commit()
        return user.id


def login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Log ``client`` in; sets its CSRF header for the following requests."""
    answer = client.post("/api/login", json={"username": username, "password": password})
    assert answer.status_code == 200, answer.text
    token = answer.json()["csrf_token"]
    client.headers["X-CSRF-Token"] = token
    return token


def tablet_png(width: int = 900, height: int = 700, seed: int = 0) -> bytes:
    """A light 'tablet' with rows of dark wedge-like marks, as PNG bytes."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (width, height), (196, 170, 140))
    draw = ImageDraw.Draw(image)
    for y in range(40, height - 60, 80):
        for x in range(30, width - 60, 70):
            dx, dy = rng.integers(0, 8, 2)
            draw.polygon([(x + dx, y + dy), (x + 40, y + 10), (x + dx, y + 45)], fill=(90, 70, 50))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def wait_for_job(client: Any, job_id: int, timeout: float = 60.0) -> dict:
    """Poll ``/api/jobs/<id>`` with a test client or an ``httpx.Client`` until the job ends."""
    deadline = time.monotonic() + timeout
    job: dict = {}
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s: {job}")

"""A server killed (SIGKILL) in the middle of a detection job: nothing half-written, and the job
runs again after the restart."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from cuneidet.deploy.export import export_onnx
from cuneidet.serve.accounts import add_account
from cuneidet.serve.db import Job, Sign, open_database
from cuneidet.serve.settings import ServeSettings
from tests.tiny_models import two_stage_recogniser

PASSWORD = "a long enough password"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(data_dir, model, port) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "cuneidet.cli.serve",
        f"serve.data_dir={data_dir}",
        f"serve.model_file={model}",
        f"serve.port={port}",
        "serve.threads=1",
        f"hydra.run.dir={data_dir}/hydra",
    ]
    log = (data_dir / f"server_{port}.log").open("w")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def _client(port: int) -> httpx.Client:
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    for _ in range(600):
        try:
            if client.get("/api/status").json()["model"]["ready"]:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    answer = client.post("/api/login", json={"username": "alice", "password": PASSWORD})
    answer.raise_for_status()
    client.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
    return client


def _big_photo() -> bytes:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (3000, 5000), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG", compress_level=1)
    return out.getvalue()


@pytest.mark.slow
def test_a_job_killed_midway_leaves_nothing_and_runs_again(tmp_path):
    model = tmp_path / "model" / "sign.onnx"
    export_onnx(two_stage_recogniser(), model, inference={"score_thresh": 0.01})
    data_dir = tmp_path / "serve"
    add_account(ServeSettings(data_dir=data_dir), "alice", PASSWORD, admin=False)
    port = _port()
    server = _start(data_dir, model, port)
    try:
        client = _client(port)
        collection = client.post("/api/collections", json={"name": "k"}).json()["id"]
        files = {"files": ("big.png", _big_photo(), "image/png")}
        photo = client.post(f"/api/collections/{collection}/photos", files=files).json()
        photo_id = photo["photos"][0]["id"]
        job = client.post(f"/api/photos/{photo_id}/detect", json={"scale": 1.0}).json()
        for _ in range(600):
            state = client.get(f"/api/jobs/{job['id']}").json()
            if state["status"] == "running" and state["message"].startswith("detecting"):
                break
            time.sleep(0.02)
        assert state["message"].startswith("detecting"), state
        os.kill(server.pid, signal.SIGKILL)
        server.wait(10)
    finally:
        if server.poll() is None:
            server.kill()
    sessions = open_database(data_dir / "cuneidet.sqlite")
    with sessions() as db:
        assert db.get(Job, job["id"]).status == "running"  # killed while running
        assert db.query(Sign).count() == 0  # and no partial result
    port = _port()
    server = _start(data_dir, model, port)
    try:
        client = _client(port)
        for _ in range(1200):
            state = client.get(f"/api/jobs/{job['id']}").json()
            if state["status"] in ("done", "failed"):
                break
            time.sleep(0.1)
        assert state["status"] == "done" and state["attempts"] == 2, state
        assert client.get(f"/api/photos/{photo_id}").json()["sign_count"] > 0
    finally:
        server.terminate()
        server.wait(30)

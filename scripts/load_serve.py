#!/usr/bin/env python
"""Load test of the web app on loopback: many clients uploading photos and polling jobs at once.

    .venv/bin/python scripts/load_serve.py [--clients 50] [--seconds 60] \\
        [--model-file outputs/export/recogniser.onnx] [--photo tablet.jpg] \\
        [--json results/load_serve.json]

Starts ``cuneidet-serve`` as a separate process on a free loopback port with a fresh data
folder (the detector of ``--model-file``, else the one the config chooses), creates one account
per client, then runs ``--clients`` concurrent clients for ``--seconds``. Each client logs in,
makes a collection and loops: upload the photo (multipart, checked and stored by the server),
queue its detection, then poll the job, the photo list and the signs once a second until the
job ends or ``--poll-rounds`` rounds pass, and upload again. Detection jobs really run in the
server's worker meanwhile (the same 2 cores). Every request's latency and status is recorded;
an error is a transport failure or any answer other than the expected one (2xx; 409 for a
detection asked while one is queued counts as an error too: the clients never do that).
Prints and writes requests/s, p50/p95 latency and errors, overall and per request kind.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import httpx
import numpy as np
from PIL import Image, ImageDraw

from cuneidet.utils.io import write_json
from cuneidet.utils.provenance import git_commit

PASSWORD = "load-test-password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def default_photo(width: int = 1600, height: int = 1200) -> bytes:
    """A tablet-like JPEG (rows of dark wedges on clay colour), about what a phone uploads."""
    rng = np.random.default_rng(0)
    image = Image.new("RGB", (width, height), (190, 165, 135))
    draw = ImageDraw.Draw(image)
    for y in range(60, height - 80, 90):
        for x in range(40, width - 80, 75):
            dx, dy = rng.integers(0, 10, 2)
            draw.polygon([(x + dx, y + dy), (x + 45, y + 12), (x + dx, y + 50)], fill=(85, 65, 45))
    noise = rng.normal(0, 6, (height, width, 3))
    pixels = np.clip(np.asarray(image, float) + noise, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


class Recorder:
    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.examples: list[str] = []

    async def call(
        self, client: httpx.AsyncClient, kind: str, method: str, url: str, **kwargs
    ) -> httpx.Response | None:
        start = time.perf_counter()
        try:
            answer = await client.request(method, url, **kwargs)
        except httpx.HTTPError as error:
            self._error(kind, f"{kind}: {type(error).__name__}: {error}")
            return None
        finally:
            self.latencies[kind].append(time.perf_counter() - start)
        if not answer.is_success:
            self._error(kind, f"{kind}: {answer.status_code} {answer.text[:200]}")
            return None
        return answer

    def _error(self, kind: str, text: str) -> None:
        self.errors[kind] += 1
        if len(self.examples) < 10:
            self.examples.append(text)


async def run_client(
    base: str, index: int, photo: bytes, deadline: float, rounds: int, rec: Recorder
) -> dict[str, int]:
    done = {"uploads": 0, "jobs_done": 0, "jobs_failed": 0}
    limits = httpx.Limits(max_connections=2)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        answer = await rec.call(
            client,
            "login",
            "POST",
            "/api/login",
            json={"username": f"user{index}", "password": PASSWORD},
        )
        if answer is None:
            return done
        client.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
        made = await rec.call(
            client, "create_collection", "POST", "/api/collections", json={"name": f"c{index}"}
        )
        if made is None:
            return done
        collection = made.json()["id"]
        while time.monotonic() < deadline:
            files = {"files": (f"tablet_{index}.jpg", photo, "image/jpeg")}
            uploaded = await rec.call(
                client, "upload", "POST", f"/api/collections/{collection}/photos", files=files
            )
            if uploaded is None:
                await asyncio.sleep(1)
                continue
            done["uploads"] += 1
            photo_id = uploaded.json()["photos"][0]["id"]
            job = await rec.call(
                client, "detect", "POST", f"/api/photos/{photo_id}/detect", json={}
            )
            if job is None:
                continue
            for _ in range(rounds):
                if time.monotonic() >= deadline:
                    break
                await asyncio.sleep(1)
                state = await rec.call(client, "poll_job", "GET", f"/api/jobs/{job.json()['id']}")
                await rec.call(client, "poll_collection", "GET", f"/api/collections/{collection}")
                await rec.call(client, "poll_signs", "GET", f"/api/photos/{photo_id}/signs")
                if state is not None and state.json()["status"] in ("done", "failed"):
                    done["jobs_done" if state.json()["status"] == "done" else "jobs_failed"] += 1
                    break
    return done


def start_server(data_dir: Path, port: int, model_file: str | None) -> subprocess.Popen:
    base = [sys.executable, "-m", "cuneidet.cli.serve", f"serve.data_dir={data_dir}"]
    hydra = [f"hydra.run.dir={data_dir}/hydra", "hydra.output_subdir=null"]
    model = [f"serve.model_file={model_file}"] if model_file else []
    env = {**os.environ, "CUNEIDET_ADMIN_PASSWORD": PASSWORD}
    subprocess.run([*base, *hydra, "create_admin=admin"], check=True, env=env, capture_output=True)
    log = (data_dir / "server.log").open("w")
    return subprocess.Popen(
        [*base, *hydra, *model, f"serve.port={port}"], stdout=log, stderr=subprocess.STDOUT
    )


def wait_ready(base: str, timeout: float = 300.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status = httpx.get(f"{base}/api/status", timeout=5).json()
            if status["model"]["ready"] or status["model"]["error"]:
                return status
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the server at {base} did not become ready in {timeout:.0f} s")


def make_users(base: str, count: int) -> None:
    with httpx.Client(base_url=base, timeout=60) as admin:
        answer = admin.post("/api/login", json={"username": "admin", "password": PASSWORD})
        answer.raise_for_status()
        admin.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
        for index in range(count):
            body = {"username": f"user{index}", "password": PASSWORD}
            admin.post("/api/users", json=body).raise_for_status()


def percentile_ms(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)) * 1000, 1) if values else float("nan")


async def load(base: str, args: argparse.Namespace, photo: bytes) -> tuple[Recorder, list, float]:
    rec = Recorder()
    start = time.monotonic()
    deadline = start + args.seconds
    tasks = [
        run_client(base, i, photo, deadline, args.poll_rounds, rec) for i in range(args.clients)
    ]
    results = await asyncio.gather(*tasks)
    return rec, results, time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--poll-rounds", type=int, default=20)
    parser.add_argument("--model-file", default=None, help="an export of cuneidet-export")
    parser.add_argument("--photo", type=Path, default=None, help="the photo every client uploads")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    photo = args.photo.read_bytes() if args.photo else default_photo()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="cuneidet_load_") as folder:
        server = start_server(Path(folder), port, args.model_file)
        try:
            status = wait_ready(base)
            make_users(base, args.clients)
            rec, results, elapsed = asyncio.run(load(base, args, photo))
        finally:
            server.terminate()
            server.wait(30)
    everything = [v for values in rec.latencies.values() for v in values]
    errors = sum(rec.errors.values())
    record = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "git_commit": git_commit(),
        "clients": args.clients,
        "seconds": round(elapsed, 1),
        "requests": len(everything),
        "errors": errors,
        "p50_ms": percentile_ms(everything, 50),
        "p95_ms": percentile_ms(everything, 95),
        "requests_per_s": round(len(everything) / elapsed, 1),
        "photo_bytes": len(photo),
        "uploads": sum(r["uploads"] for r in results),
        "jobs_done": sum(r["jobs_done"] for r in results),
        "jobs_failed": sum(r["jobs_failed"] for r in results),
        "model": status["model"],
        "per_kind": {
            kind: {
                "requests": len(values),
                "errors": rec.errors.get(kind, 0),
                "p50_ms": percentile_ms(values, 50),
                "p95_ms": percentile_ms(values, 95),
            }
            for kind, values in sorted(rec.latencies.items())
        },
        "error_examples": rec.examples,
        "machine": f"{os.cpu_count()} CPU cores, server and clients on the same machine",
    }
    print(json.dumps(record, indent=1, ensure_ascii=False))
    if args.json:
        write_json(args.json, record)


if __name__ == "__main__":
    main()

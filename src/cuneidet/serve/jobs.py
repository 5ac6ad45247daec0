"""Detection jobs: a queue kept in the database and worker threads that drain it.

A job is claimed atomically (``queued`` → ``running``), reports its progress into its row, and
writes its result (the photo's signs, its scale, the job's end) in **one** transaction, so a
job killed midway leaves no partial signs. At start, :meth:`JobWorker.recover` puts jobs left
``running`` by a dead server back in the queue, or fails them after ``job_max_attempts``
interrupted runs. A failing job records its error and the worker goes on with the next.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import sessionmaker

from cuneidet.data.crops import box_iou
from cuneidet.errors import CuneidetError
from cuneidet.serve.db import Job, Photo, Sign, utcnow
from cuneidet.serve.detection import (
    LoadedModel,
    ModelHolder,
    PhotoDetections,
    Progress,
    detect_photo,
)
from cuneidet.serve.settings import ServeSettings
from cuneidet.serve.uploads import original_path

log = logging.getLogger(__name__)

#: a new model box overlapping a sign the user kept, edited or deleted this much is dropped
KEEP_IOU = 0.5

Detect = Callable[[LoadedModel, Path, float | None, ServeSettings, Progress], PhotoDetections]


class JobWorker:
    """``settings.workers`` threads running detection jobs from the ``jobs`` table."""

    def __init__(
        self,
        sessions: sessionmaker,
        settings: ServeSettings,
        models: ModelHolder,
        detect: Detect = detect_photo,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.models = models
        self.detect = detect
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def recover(self) -> int:
        """Re-queue (or fail, after too many attempts) jobs a stopped server left running."""
        limit = self.settings.job_max_attempts
        with self.sessions.begin() as db:
            stale = db.scalars(select(Job).where(Job.status == "running")).all()
            for job in stale:
                if job.attempts >= limit:
                    job.status, job.finished_at = "failed", utcnow()
                    job.error = f"interrupted {job.attempts} times (server stopped mid-job)"
                    job.photo.status = "failed"
                else:
                    job.status, job.progress = "queued", 0.0
                    job.message = "re-queued after a server restart"
                    job.photo.status = "queued"
        if stale:
            log.warning("%d unfinished job(s) from an earlier run re-queued or failed", len(stale))
        return len(stale)

    def start(self) -> None:
        self.recover()
        for index in range(self.settings.workers):
            thread = threading.Thread(target=self._loop, name=f"cuneidet-job-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def notify(self) -> None:
        """A job was queued: wake an idle worker."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            job_id = self.claim()
            if job_id is None:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            self.run(job_id)

    def claim(self) -> int | None:
        """Mark the oldest queued job running and return its id (None when the queue is empty)."""
        with self.sessions.begin() as db:
            oldest = db.execute(
                select(Job.id, Job.photo_id).where(Job.status == "queued").order_by(Job.id).limit(1)
            ).first()
            if oldest is None:
                return None
            job_id, photo_id = oldest
            claimed = db.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == "queued")
                .values(
                    status="running",
                    attempts=Job.attempts + 1,
                    started_at=utcnow(),
                    message="starting",
                )
            ).rowcount
            if claimed != 1:
                return None  # another worker was faster
            db.execute(update(Photo).where(Photo.id == photo_id).values(status="running"))
            return job_id

    def run(self, job_id: int) -> None:
        with self.sessions() as db:
            job = db.get(Job, job_id)
            if job is None:
                return
            photo = job.photo
            path = original_path(self.settings.upload_dir, photo.stored_name, photo.format)
            scale = job.scale

        def progress(fraction: float, message: str) -> None:
            with self.sessions.begin() as db:
                db.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.status == "running")
                    .values(progress=fraction, message=message)
                )

        try:
            result = self.detect(self.models.get(), path, scale, self.settings, progress)
        except (CuneidetError, OSError, ValueError, RuntimeError) as error:
            self._fail(job_id, str(error))
            return
        except Exception as error:  # the worker must outlive any bug in one job
            log.exception("job %d failed", job_id)
            self._fail(job_id, f"internal error: {type(error).__name__}: {error}")
            return
        self._save(job_id, result)

    def _fail(self, job_id: int, message: str) -> None:
        log.warning("job %d failed: %s", job_id, message)
        with self.sessions.begin() as db:
            job = db.get(Job, job_id)
            if job is None:
                return
            job.status, job.error, job.finished_at = "failed", message, utcnow()
            job.message = "failed"
            job.photo.status = "failed"

    def _save(self, job_id: int, result: PhotoDetections) -> None:
        with self.sessions.begin() as db:
            job = db.get(Job, job_id)
            if job is None or job.status != "running":
                return  # deleted with its photo meanwhile
            photo = job.photo
            kept = [s for s in photo.signs if s.source == "user" or s.edited or s.deleted]
            for sign in photo.signs:
                if sign not in kept:
                    db.delete(sign)
            for values in _not_overlapping(result.signs, kept):
                db.add(Sign(photo_id=photo.id, model_label=values["label"], **values))
            photo.scale_used = result.scale
            if result.scale_auto is not None:
                photo.scale_auto = result.scale_auto
            photo.status = "done"
            job.status, job.progress, job.finished_at = "done", 1.0, utcnow()
            job.message = f"{len(result.signs)} signs at scale {result.scale:.2f}"


def _not_overlapping(signs: list[dict[str, Any]], kept: list[Sign]) -> list[dict[str, Any]]:
    if not kept or not signs:
        return signs
    new = np.array([[s["x1"], s["y1"], s["x2"], s["y2"]] for s in signs], np.float64)
    old = np.array([[s.x1, s.y1, s.x2, s.y2] for s in kept], np.float64)
    iou = box_iou(new, old)
    return [s for s, overlap in zip(signs, iou.max(axis=1), strict=True) if overlap < KEEP_IOU]

"""JSON shapes of the API's objects (``docs/serve-api.md``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cuneidet.serve.db import Collection, Job, Photo, Sign, User
from cuneidet.serve.exports import ClassTable


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds") + "Z"


def user_view(user: User, full: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {"id": user.id, "username": user.username, "is_admin": user.is_admin}
    if full:
        view.update(is_active=user.is_active, created_at=_time(user.created_at))
    return view


def job_view(job: Job | None) -> dict[str, Any] | None:
    if job is None:
        return None
    return {
        "id": job.id,
        "photo_id": job.photo_id,
        "status": job.status,
        "progress": round(job.progress, 3),
        "message": job.message,
        "error": job.error,
        "attempts": job.attempts,
        "created_at": _time(job.created_at),
        "started_at": _time(job.started_at),
        "finished_at": _time(job.finished_at),
    }


def photo_view(photo: Photo, sign_count: int) -> dict[str, Any]:
    """``sign_count``: its signs not deleted (:func:`cuneidet.serve.deps.sign_counts`, one query
    for many photos instead of loading every sign)."""
    last_job = photo.jobs[-1] if photo.jobs else None
    return {
        "id": photo.id,
        "collection_id": photo.collection_id,
        "name": photo.name,
        "width": photo.width,
        "height": photo.height,
        "display_width": photo.display_width,
        "display_height": photo.display_height,
        "format": photo.format,
        "bytes": photo.bytes,
        "scale": photo.scale,
        "scale_auto": photo.scale_auto,
        "scale_used": photo.scale_used,
        "status": photo.status,
        "sign_count": sign_count,
        "reviewed": photo.reviewed,
        "review_threshold": photo.review_threshold,
        "created_at": _time(photo.created_at),
        "job": job_view(last_job),
    }


def collection_view(
    collection: Collection, counts: Mapping[int, int], photos: bool = False
) -> dict[str, Any]:
    """``counts``: signs not deleted per photo id (photos without signs may be missing)."""
    view: dict[str, Any] = {
        "id": collection.id,
        "name": collection.name,
        "created_at": _time(collection.created_at),
        "photo_count": len(collection.photos),
        "sign_count": sum(counts.get(p.id, 0) for p in collection.photos),
    }
    if photos:
        view["photos"] = [photo_view(p, counts.get(p.id, 0)) for p in collection.photos]
    return view


def sign_view(sign: Sign, classes: ClassTable) -> dict[str, Any]:
    return {
        "id": sign.id,
        "photo_id": sign.photo_id,
        "x1": round(sign.x1, 1),
        "y1": round(sign.y1, 1),
        "x2": round(sign.x2, 1),
        "y2": round(sign.y2, 1),
        **classes.get(sign.label).as_dict(),
        "score": round(sign.score, 4),
        "line": sign.line,
        "source": sign.source,
        "edited": sign.edited,
        "topk": [
            {**classes.get(int(label)).as_dict(), "score": round(float(score), 4)}
            for label, score in (sign.topk or [])
        ],
    }

"""Routes of the user's data: collections, photos (upload, image, detection), signs
(corrections), jobs and exports. Every object is looked up through its owner (404 otherwise)."""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, File, HTTPException, Query, Response, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession
from starlette.background import BackgroundTask

from cuneidet.errors import UploadRejectedError
from cuneidet.serve import exports
from cuneidet.serve.db import Collection, Job, Photo, Sign, utcnow
from cuneidet.serve.deps import (
    CurrentUser,
    Db,
    State,
    active_job,
    owned_collection,
    owned_job,
    owned_photo,
    owned_sign,
    sign_counts,
)
from cuneidet.serve.detection import nearest_line
from cuneidet.serve.uploads import display_path, remove_stored, store_upload, thumbnail_path
from cuneidet.serve.views import collection_view, job_view, photo_view, sign_view

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api")

PHOTO_FORMATS = ("csv", "coco", "png")
COLLECTION_FORMATS = ("csv", "coco", "counts", "png", "training")
MinScore = Annotated[float, Query(ge=0.0, le=1.0)]


class CollectionBody(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class PhotoChange(BaseModel):
    scale: float | None = Field(default=None, gt=0.05, lt=20.0)
    reviewed: bool | None = None
    review_threshold: float | None = Field(default=None, ge=0.0, le=1.0)


class DetectBody(BaseModel):
    scale: float | None = Field(default=None, gt=0.05, lt=20.0)


class SignBody(BaseModel):
    x1: float
    y1: float
    x2: float
    y2: float
    label: int


class SignChange(BaseModel):
    label: int | None = None
    x1: float | None = None
    y1: float | None = None
    x2: float | None = None
    y2: float | None = None


# --------------------------------------------------------------------------- collections


@router.get("/collections")
def list_collections(user: CurrentUser, db: Db) -> list[dict]:
    rows = db.scalars(
        select(Collection).where(Collection.owner_id == user.id).order_by(Collection.id)
    )
    collections = list(rows)
    counts = sign_counts(db, (p.id for c in collections for p in c.photos))
    return [collection_view(c, counts) for c in collections]


@router.post("/collections", status_code=201)
def create_collection(body: CollectionBody, user: CurrentUser, db: Db) -> dict:
    collection = Collection(owner_id=user.id, name=body.name.strip() or "collection")
    db.add(collection)
    db.commit()
    return collection_view(collection, {})


@router.get("/collections/{collection_id}")
def get_collection(collection_id: int, user: CurrentUser, db: Db) -> dict:
    collection = owned_collection(db, user, collection_id)
    counts = sign_counts(db, (p.id for p in collection.photos))
    return collection_view(collection, counts, photos=True)


@router.delete("/collections/{collection_id}", status_code=204)
def delete_collection(collection_id: int, user: CurrentUser, db: Db, state: State) -> Response:
    collection = owned_collection(db, user, collection_id)
    files = [(p.stored_name, p.format) for p in collection.photos]
    db.delete(collection)
    db.commit()
    for stored_name, fmt in files:
        remove_stored(state.settings.upload_dir, stored_name, fmt)
    return Response(status_code=204)


@router.post("/collections/{collection_id}/photos", status_code=201)
def upload_photos(
    collection_id: int,
    user: CurrentUser,
    db: Db,
    state: State,
    files: Annotated[list[UploadFile], File()],
) -> dict:
    collection = owned_collection(db, user, collection_id)
    settings = state.settings
    if len(files) > settings.max_files_per_upload:
        raise HTTPException(
            400, f"{len(files)} files in one upload; the limit is {settings.max_files_per_upload}"
        )
    photos, rejected = [], []
    for upload in files:
        try:
            stored = store_upload(
                upload.file,
                upload.filename,
                settings.upload_dir,
                settings.max_upload_bytes,
                settings.max_pixels,
                settings.display_max_side,
            )
        except UploadRejectedError as error:
            rejected.append(
                {"name": upload.filename, "status": error.status_code, "detail": str(error)}
            )
            continue
        photo = Photo(collection_id=collection.id, **vars(stored))
        db.add(photo)
        photos.append(photo)
    db.commit()
    if not photos and rejected:  # nothing stored: the refusal is the answer
        statuses = {r["status"] for r in rejected}
        status = statuses.pop() if len(statuses) == 1 else 400
        raise HTTPException(status, "; ".join(r["detail"] for r in rejected))
    return {"photos": [photo_view(p, 0) for p in photos], "rejected": rejected}


@router.get("/collections/{collection_id}/counts")
def collection_counts(
    collection_id: int, user: CurrentUser, db: Db, state: State, min_score: MinScore = 0.0
) -> list[dict]:
    collection = owned_collection(db, user, collection_id)
    return exports.class_counts(collection.photos, state.classes(), min_score)


@router.get("/collections/{collection_id}/export", response_model=None)
def export_collection(
    collection_id: int,
    user: CurrentUser,
    db: Db,
    state: State,
    format: str = "csv",
    min_score: MinScore = 0.0,
) -> Response:
    collection = owned_collection(db, user, collection_id)
    photos = collection.photos
    stem = f"collection_{collection.id}_{_safe(collection.name)}"
    classes = state.classes()
    settings = state.settings
    if format in ("csv", "coco"):
        return _detections_download(format, photos, classes, min_score, stem)
    if format == "counts":
        rows = exports.class_counts(photos, classes, min_score)
        return _download(exports.counts_csv(rows), f"{stem}_counts.csv", "text/csv")
    if format == "png":
        return _zip_download(
            state,
            lambda handle: exports.write_png_zip(
                handle, photos, settings.upload_dir, classes, min_score, settings.font_file
            ),
            f"{stem}_png.zip",
        )
    if format == "training":
        reviewed = [p for p in photos if p.reviewed]
        if not reviewed:
            raise HTTPException(
                409, "no photo of this collection is marked reviewed; review photos first"
            )
        return _zip_download(
            state,
            lambda handle: exports.write_training_zip(
                handle, collection.id, reviewed, settings.upload_dir, classes
            ),
            f"{exports.training_set_name(collection.id)}.zip",
        )
    raise HTTPException(400, f"format={format!r} is unknown; choose from {COLLECTION_FORMATS}")


# --------------------------------------------------------------------------- photos


@router.get("/photos/{photo_id}")
def get_photo(photo_id: int, user: CurrentUser, db: Db) -> dict:
    return _photo_view(db, owned_photo(db, user, photo_id))


@router.patch("/photos/{photo_id}")
def change_photo(photo_id: int, body: PhotoChange, user: CurrentUser, db: Db) -> dict:
    photo = owned_photo(db, user, photo_id)
    if "scale" in body.model_fields_set:
        photo.scale = body.scale
    if body.reviewed is not None:
        photo.reviewed = body.reviewed
    if body.review_threshold is not None:
        photo.review_threshold = body.review_threshold
    db.commit()
    return _photo_view(db, photo)


@router.delete("/photos/{photo_id}", status_code=204)
def delete_photo(photo_id: int, user: CurrentUser, db: Db, state: State) -> Response:
    photo = owned_photo(db, user, photo_id)
    stored_name, fmt = photo.stored_name, photo.format
    db.delete(photo)
    db.commit()
    remove_stored(state.settings.upload_dir, stored_name, fmt)
    return Response(status_code=204)


@router.get("/photos/{photo_id}/image", response_model=None)
def photo_image(photo_id: int, user: CurrentUser, db: Db, state: State) -> FileResponse:
    photo = owned_photo(db, user, photo_id)
    path = display_path(state.settings.upload_dir, photo.stored_name)
    if not path.is_file():
        raise HTTPException(404, f"the image file of photo {photo_id} is missing on the server")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private"})


@router.get("/photos/{photo_id}/thumbnail", response_model=None)
def photo_thumbnail(photo_id: int, user: CurrentUser, db: Db, state: State) -> FileResponse:
    photo = owned_photo(db, user, photo_id)
    path = thumbnail_path(state.settings.upload_dir, photo.stored_name)
    if not path.is_file():
        raise HTTPException(404, f"the thumbnail of photo {photo_id} is missing on the server")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private"})


@router.post("/photos/{photo_id}/detect", status_code=202)
def detect(
    photo_id: int, user: CurrentUser, db: Db, state: State, body: DetectBody | None = None
) -> dict:
    photo = owned_photo(db, user, photo_id)
    if active_job(db, photo.id) is not None:
        raise HTTPException(409, f"photo {photo_id} already has a detection job queued or running")
    if state.models.error and state.models.loaded is None:
        raise HTTPException(503, state.models.error)
    scale = body.scale if body is not None and "scale" in body.model_fields_set else photo.scale
    job = Job(photo_id=photo.id, owner_id=user.id, scale=scale)
    photo.status = "queued"
    db.add(job)
    db.commit()
    state.worker.notify()
    return job_view(job) or {}


@router.get("/photos/{photo_id}/signs")
def photo_signs(photo_id: int, user: CurrentUser, db: Db, state: State) -> list[dict]:
    photo = owned_photo(db, user, photo_id)
    classes = state.classes()
    return [sign_view(s, classes) for s in photo.signs if not s.deleted]


@router.post("/photos/{photo_id}/signs", status_code=201)
def add_sign(photo_id: int, body: SignBody, user: CurrentUser, db: Db, state: State) -> dict:
    photo = owned_photo(db, user, photo_id)
    _check_label(state, body.label)
    box = _checked_box(photo, body.x1, body.y1, body.x2, body.y2)
    kept = [s for s in photo.signs if not s.deleted]
    line = nearest_line(
        np.array([[s.x1, s.y1, s.x2, s.y2] for s in kept]).reshape(-1, 4),
        np.array([s.line for s in kept]),
        np.array(box),
    )
    sign = Sign(photo_id=photo.id, label=body.label, score=1.0, line=line, source="user", topk=[])
    sign.x1, sign.y1, sign.x2, sign.y2 = box
    db.add(sign)
    db.commit()
    return sign_view(sign, state.classes())


@router.patch("/signs/{sign_id}")
def change_sign(sign_id: int, body: SignChange, user: CurrentUser, db: Db, state: State) -> dict:
    sign = owned_sign(db, user, sign_id)
    if body.label is not None:
        _check_label(state, body.label)
        sign.label = body.label
    corners = (body.x1, body.y1, body.x2, body.y2)
    if any(v is not None for v in corners):
        current = (sign.x1, sign.y1, sign.x2, sign.y2)
        merged = [c if v is None else v for v, c in zip(corners, current, strict=True)]
        sign.x1, sign.y1, sign.x2, sign.y2 = _checked_box(sign.photo, *merged)
    sign.edited, sign.updated_at = True, utcnow()
    db.commit()
    return sign_view(sign, state.classes())


@router.delete("/signs/{sign_id}", status_code=204)
def delete_sign(sign_id: int, user: CurrentUser, db: Db) -> Response:
    sign = owned_sign(db, user, sign_id)
    sign.deleted, sign.updated_at = True, utcnow()
    db.commit()
    return Response(status_code=204)


@router.get("/photos/{photo_id}/export", response_model=None)
def export_photo(
    photo_id: int,
    user: CurrentUser,
    db: Db,
    state: State,
    format: str = "csv",
    min_score: MinScore = 0.0,
) -> Response:
    photo = owned_photo(db, user, photo_id)
    stem = exports.export_names([photo])[photo.id]
    classes = state.classes()
    if format in ("csv", "coco"):
        return _detections_download(format, [photo], classes, min_score, stem)
    if format == "png":
        settings = state.settings
        body = exports.drawn_png(photo, settings.upload_dir, classes, min_score, settings.font_file)
        return _download(body, f"{stem}_signs.png", "image/png")
    raise HTTPException(400, f"format={format!r} is unknown; choose from {PHOTO_FORMATS}")


# --------------------------------------------------------------------------- jobs


@router.get("/jobs")
def list_jobs(user: CurrentUser, db: Db) -> list[dict]:
    rows = db.scalars(select(Job).where(Job.owner_id == user.id).order_by(Job.id.desc()).limit(200))
    return [job_view(j) for j in rows]


@router.get("/jobs/{job_id}")
def get_job(job_id: int, user: CurrentUser, db: Db) -> dict:
    return job_view(owned_job(db, user, job_id)) or {}


@router.get("/classes")
def list_classes(_: CurrentUser, state: State) -> list[dict]:
    return [c.as_dict() for _, c in sorted(state.classes().classes.items())]


# --------------------------------------------------------------------------- helpers


def _photo_view(db: DbSession, photo: Photo) -> dict:
    return photo_view(photo, sign_counts(db, [photo.id]).get(photo.id, 0))


def _check_label(state: Any, label: int) -> None:
    classes = state.classes().classes
    if not classes:
        raise HTTPException(503, "no detector is loaded, so its classes are unknown")
    if label not in classes:
        raise HTTPException(400, f"label {label} is not a class of the detector (1…{max(classes)})")


def _checked_box(photo: Photo, x1: float, y1: float, x2: float, y2: float) -> list[float]:
    values = [x1, y1, x2, y2]
    if not all(np.isfinite(values)):
        raise HTTPException(400, "box coordinates must be finite numbers")
    x1, x2 = sorted((min(max(x1, 0.0), photo.width), min(max(x2, 0.0), photo.width)))
    y1, y2 = sorted((min(max(y1, 0.0), photo.height), min(max(y2, 0.0), photo.height)))
    if x2 - x1 < 2 or y2 - y1 < 2:
        raise HTTPException(400, "the box must be at least 2×2 photo pixels inside the photo")
    return [x1, y1, x2, y2]


def _safe(name: str) -> str:
    """An ASCII file-name fragment of a user-given name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:60] or "export"


def _download(body: bytes, filename: str, media_type: str) -> Response:
    return Response(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{_safe(filename)}"'},
    )


def _detections_download(
    format: str, photos: list[Photo], classes: exports.ClassTable, min_score: float, stem: str
) -> Response:
    """The signs of ``photos`` as the paper's CSV (``csv``) or COCO JSON (``coco``)."""
    if format == "csv":
        return _download(exports.paper_csv(photos, classes, min_score), f"{stem}.csv", "text/csv")
    body = exports.coco_json(photos, classes, min_score)
    return _download(body, f"{stem}_coco.json", "application/json")


def _zip_download(state: Any, write: Any, filename: str) -> FileResponse:
    """Write a zip into a temporary file (removed after sending) and send it."""
    folder = state.settings.data_dir / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".zip", delete=False) as handle:
        try:
            write(handle)
        except BaseException:
            handle.close()
            _unlink(handle.name)
            raise
    return FileResponse(
        handle.name,
        media_type="application/zip",
        filename=_safe(filename),
        background=BackgroundTask(_unlink, handle.name),
    )


def _unlink(path: str) -> None:
    Path(path).unlink(missing_ok=True)

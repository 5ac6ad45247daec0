"""Request-scoped pieces of the app: its state, a database session, the logged-in user, the
CSRF check, and ownership lookups that answer 404 for another user's ids."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from sqlalchemy import func, select
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from cuneidet.serve.db import Collection, Job, Photo, Session, Sign, User, utcnow
from cuneidet.serve.detection import ModelHolder
from cuneidet.serve.exports import ClassTable
from cuneidet.serve.jobs import JobWorker
from cuneidet.serve.security import (
    CSRF_HEADER,
    SESSION_COOKIE,
    LoginLimiter,
    same_token,
    token_hash,
)
from cuneidet.serve.settings import ServeSettings

UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass
class AppState:
    settings: ServeSettings
    sessions: sessionmaker
    models: ModelHolder
    worker: JobWorker
    limiter: LoginLimiter
    oracle: ModelHolder[Any]
    setup_token: str | None = field(default=None, repr=False)

    def classes(self) -> ClassTable:
        loaded = self.models.loaded
        return ClassTable(loaded.classes if loaded is not None else {})

    def new_setup_token(self) -> str:
        self.setup_token = secrets.token_urlsafe(18)
        return self.setup_token


def app_state(request: Request) -> AppState:
    return request.app.state.cuneidet


State = Annotated[AppState, Depends(app_state)]


def database(state: State) -> Iterator[DbSession]:
    with state.sessions() as db:
        yield db


Db = Annotated[DbSession, Depends(database)]


def login_session(request: Request, db: Db) -> Session:
    """The session of the request's cookie; 401 when absent, unknown or expired."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise HTTPException(401, "not logged in")
    row = db.get(Session, token_hash(token))
    if row is None:
        raise HTTPException(401, "the session has ended; log in again")
    if row.expires_at <= utcnow():
        db.delete(row)
        db.commit()
        raise HTTPException(401, "the session has expired; log in again")
    if not row.user.is_active:
        raise HTTPException(403, "this account is disabled; ask an administrator")
    if request.method in UNSAFE_METHODS and not same_token(
        row.csrf_token, request.headers.get(CSRF_HEADER)
    ):
        raise HTTPException(403, f"missing or wrong {CSRF_HEADER} header (CSRF protection)")
    return row


LoginSession = Annotated[Session, Depends(login_session)]


def current_user(session: LoginSession) -> User:
    return session.user


CurrentUser = Annotated[User, Depends(current_user)]


def admin_user(user: CurrentUser) -> User:
    if not user.is_admin:
        raise HTTPException(403, "only an administrator may do this")
    return user


AdminUser = Annotated[User, Depends(admin_user)]


def owned_collection(db: DbSession, user: User, collection_id: int) -> Collection:
    collection = db.get(Collection, collection_id)
    if collection is None or collection.owner_id != user.id:
        raise HTTPException(404, f"no collection {collection_id}")
    return collection


def owned_photo(db: DbSession, user: User, photo_id: int) -> Photo:
    photo = db.get(Photo, photo_id)
    if photo is None or photo.collection.owner_id != user.id:
        raise HTTPException(404, f"no photo {photo_id}")
    return photo


def owned_sign(db: DbSession, user: User, sign_id: int) -> Sign:
    sign = db.get(Sign, sign_id)
    if sign is None or sign.deleted or sign.photo.collection.owner_id != user.id:
        raise HTTPException(404, f"no sign {sign_id}")
    return sign


def owned_job(db: DbSession, user: User, job_id: int) -> Job:
    job = db.get(Job, job_id)
    if job is None or job.owner_id != user.id:
        raise HTTPException(404, f"no job {job_id}")
    return job


def sign_counts(db: DbSession, photo_ids: Iterable[int]) -> dict[int, int]:
    """Signs not deleted per photo, in one query."""
    ids = list(photo_ids)
    if not ids:
        return {}
    rows = db.execute(
        select(Sign.photo_id, func.count())
        .where(Sign.photo_id.in_(ids), Sign.deleted.is_(False))
        .group_by(Sign.photo_id)
    )
    return {int(photo_id): int(count) for photo_id, count in rows}


def active_job(db: DbSession, photo_id: int) -> Job | None:
    return db.scalar(
        select(Job)
        .where(Job.photo_id == photo_id, Job.status.in_(("queued", "running")))
        .order_by(Job.id.desc())
    )

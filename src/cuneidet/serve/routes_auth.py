"""Routes of accounts: first-run setup, login, logout, session, users (admin), app status."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session as DbSession

from cuneidet.serve.db import Session, User
from cuneidet.serve.deps import AdminUser, Db, LoginSession, State
from cuneidet.serve.security import (
    SESSION_COOKIE,
    check_login,
    hash_password,
    new_session,
    password_problem,
    same_token,
    username_problem,
)
from cuneidet.serve.views import user_view

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api")


class Credentials(BaseModel):
    username: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class SetupBody(Credentials):
    token: str = Field(max_length=128)


class NewUser(Credentials):
    is_admin: bool = False


class UserChange(BaseModel):
    is_active: bool | None = None
    is_admin: bool | None = None
    password: str | None = Field(default=None, max_length=1024)


def user_count(db: DbSession) -> int:
    return int(db.scalar(select(func.count()).select_from(User)) or 0)


@router.get("/status")
def status(state: State, db: Db) -> dict[str, Any]:
    loaded = state.models.loaded
    model = {
        "ready": loaded is not None,
        "error": state.models.error,
        "loading": state.models.loading,
    }
    if loaded is not None:
        model.update(name=loaded.path.name, kind=loaded.kind, num_classes=loaded.model.num_classes)
    settings = state.settings
    return {
        "setup_required": user_count(db) == 0,
        "model": model,
        "limits": {
            "max_upload_bytes": settings.max_upload_bytes,
            "max_pixels": settings.max_pixels,
        },
    }


def _login(request: Request, response: Response, db: DbSession, user: User, state: Any) -> dict:
    token, row = new_session(user, state.settings.session_hours)
    db.add(row)
    db.commit()
    secure = state.settings.secure_cookies
    if secure is None:
        secure = request.url.scheme == "https"
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(state.settings.session_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=secure,
        path="/",
    )
    return {"user": user_view(user), "csrf_token": row.csrf_token}


def _check_new_account(username: str, password: str) -> None:
    problem = username_problem(username) or password_problem(password)
    if problem:
        raise HTTPException(400, problem)


@router.post("/setup", status_code=201)
def setup(body: SetupBody, request: Request, response: Response, state: State, db: Db) -> dict:
    if user_count(db) > 0:
        raise HTTPException(409, "the administrator account exists already; log in")
    if state.setup_token is None or not same_token(state.setup_token, body.token):
        raise HTTPException(403, "wrong setup token: use the one the server printed at start")
    _check_new_account(body.username, body.password)
    user = User(username=body.username, password_hash=hash_password(body.password), is_admin=True)
    db.add(user)
    db.commit()
    state.setup_token = None
    log.info("administrator %s created", user.username)
    return _login(request, response, db, user, state)


@router.post("/login")
def login(body: Credentials, request: Request, response: Response, state: State, db: Db) -> dict:
    client = request.client.host if request.client else "unknown"
    keys = (f"ip:{client}", f"user:{body.username.lower()}")
    wait = state.limiter.retry_after(*keys)
    if wait > 0:
        raise HTTPException(
            429,
            f"too many failed logins; try again in {wait:.0f} s",
            headers={"Retry-After": str(max(1, round(wait)))},
        )
    user = db.scalar(select(User).where(User.username == body.username))
    if not check_login(user, body.password):
        state.limiter.failed(*keys)
        raise HTTPException(401, "wrong user name or password")
    if not user.is_active:
        raise HTTPException(403, "this account is disabled; ask an administrator")
    state.limiter.succeeded(*keys)
    return _login(request, response, db, user, state)


@router.post("/logout", status_code=204)
def logout(session: LoginSession, db: Db, response: Response) -> Response:
    db.delete(session)
    db.commit()
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/session")
def current_session(session: LoginSession) -> dict:
    return {"user": user_view(session.user), "csrf_token": session.csrf_token}


@router.get("/users")
def list_users(_: AdminUser, db: Db) -> list[dict]:
    return [user_view(u, full=True) for u in db.scalars(select(User).order_by(User.id))]


@router.post("/users", status_code=201)
def create_user(body: NewUser, _: AdminUser, db: Db) -> dict:
    _check_new_account(body.username, body.password)
    if db.scalar(select(User).where(User.username == body.username)) is not None:
        raise HTTPException(409, f"the user name {body.username!r} is taken")
    user = User(
        username=body.username, password_hash=hash_password(body.password), is_admin=body.is_admin
    )
    db.add(user)
    db.commit()
    return user_view(user, full=True)


@router.patch("/users/{user_id}")
def change_user(user_id: int, body: UserChange, admin: AdminUser, db: Db) -> dict:
    user = db.get(User, user_id)
    if user is None:
        raise HTTPException(404, f"no user {user_id}")
    if user.id == admin.id and (body.is_active is False or body.is_admin is False):
        raise HTTPException(400, "you cannot disable yourself or drop your own admin rights")
    if body.password is not None:
        problem = password_problem(body.password)
        if problem:
            raise HTTPException(400, problem)
        user.password_hash = hash_password(body.password)
    if body.is_admin is not None:
        user.is_admin = body.is_admin
    if body.is_active is not None:
        user.is_active = body.is_active
    if body.is_active is False or body.password is not None:
        db.execute(delete(Session).where(Session.user_id == user.id))  # log them out
    db.commit()
    return user_view(user, full=True)

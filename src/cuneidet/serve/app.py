"""The FastAPI application: middleware, error answers, static page, and its lifecycle.

:func:`create_app` wires the layers together; ``cuneidet-serve`` runs it under uvicorn. The
request-body limit and the cross-origin check are plain ASGI middleware, so an oversized upload
is refused before it is read (``Content-Length``) or as soon as it passes the limit (chunked).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import func, select

from cuneidet.errors import ConfigError, CuneidetError, OutputError, UploadRejectedError
from cuneidet.serve.db import User, open_database
from cuneidet.serve.deps import UNSAFE_METHODS, AppState
from cuneidet.serve.detection import (
    LoadedModel,
    ModelHolder,
    detect_photo,
    load_model,
    resolve_model_file,
)
from cuneidet.serve.jobs import Detect, JobWorker
from cuneidet.serve.routes_auth import router as auth_router
from cuneidet.serve.routes_data import router as data_router
from cuneidet.serve.routes_draw import load_oracle
from cuneidet.serve.routes_draw import router as draw_router
from cuneidet.serve.security import LoginLimiter
from cuneidet.serve.settings import ServeSettings
from cuneidet.utils.io import check_writable

log = logging.getLogger("cuneidet.serve")

STATIC_DIR = Path(__file__).parent / "static"
#: bodies of requests other than uploads (JSON) are small
JSON_BODY_LIMIT = 1 << 20
#: multipart framing on top of the photo bytes of one upload request
MULTIPART_OVERHEAD = 1 << 20
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; "
        "font-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'"
    ),
}


def create_app(
    settings: ServeSettings,
    loader: Callable[[], LoadedModel] | None = None,
    detect: Detect = detect_photo,
    oracle_loader: Callable[[], Any] | None = None,
    start_worker: bool = True,
) -> FastAPI:
    """The app on ``settings.data_dir``; ``loader`` loads the detector (default: the model
    :func:`resolve_model_file` chooses), ``detect`` runs one photo, ``oracle_loader`` loads the
    oracle-bone classifier (default: ``settings.oracle_ckpt``); tests pass their own."""
    _check_writable(settings.data_dir)
    sessions = open_database(settings.database)
    models = ModelHolder(loader or (lambda: load_model(resolve_model_file(settings), settings)))
    state = AppState(
        settings=settings,
        sessions=sessions,
        models=models,
        worker=JobWorker(sessions, settings, models, detect),
        limiter=LoginLimiter(settings.login_attempts, settings.login_window_s),
        oracle=ModelHolder(oracle_loader or (lambda: load_oracle(settings)), "the oracle model"),
    )
    with sessions() as db:
        if not db.scalar(select(func.count()).select_from(User)):
            token = state.new_setup_token()
            log.warning(
                "no account yet: open http://%s:%d/#/setup and enter the setup token %s to "
                "create the administrator (or run cuneidet-serve create_admin=<name>)",
                settings.host,
                settings.port,
                token,
            )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        models.start_loading()
        state.oracle.start_loading()
        if start_worker:
            state.worker.start()
        try:
            yield
        finally:
            state.worker.stop()

    app = FastAPI(
        title="cuneidet",
        summary="Find, name, correct and export cuneiform signs on tablet photos",
        lifespan=lifespan,
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.cuneidet = state
    app.include_router(auth_router)
    app.include_router(data_router)
    app.include_router(draw_router)
    _add_error_handlers(app)
    _add_pages(app, settings)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(SameOrigin)
    app.add_middleware(BodyLimit, upload_limit=settings.max_upload_bytes + MULTIPART_OVERHEAD)
    return app


def _check_writable(folder: Path) -> None:
    """The app keeps its database and photos in ``folder``: refuse one it cannot write."""
    try:
        check_writable(folder / ".write-check")
    except OutputError as error:
        reason = getattr(error.__cause__, "strerror", None) or error
        raise ConfigError(
            f"serve.data_dir={folder} cannot be written ({reason}); choose a "
            "folder the server may write to (serve.data_dir=<folder>) or fix its permissions"
        ) from error


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(UploadRejectedError)
    async def rejected(_: Request, error: UploadRejectedError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=error.status_code)

    @app.exception_handler(CuneidetError)
    async def cuneidet_error(_: Request, error: CuneidetError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=400)


def _add_pages(app: FastAPI, settings: ServeSettings) -> None:
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/font/cuneiform.ttf", include_in_schema=False)
    def font() -> FileResponse:
        if settings.font_file is None or not settings.font_file.is_file():
            raise HTTPException(404, "no cuneiform font configured (serve.font_file)")
        return FileResponse(
            settings.font_file, media_type="font/ttf", headers={"Cache-Control": "max-age=86400"}
        )


async def _send_json(send: Callable[..., Any], status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Refuse request bodies above the limit: uploads ``upload_limit`` bytes, everything else
    :data:`JSON_BODY_LIMIT` (413, before reading when ``Content-Length`` says so)."""

    def __init__(self, app: Any, upload_limit: int) -> None:
        self.app = app
        self.upload_limit = upload_limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = scope["path"].endswith("/photos") and scope["method"] == "POST"
        limit = self.upload_limit if upload else JSON_BODY_LIMIT
        what = "upload" if upload else "request body"
        message = f"the {what} is larger than the limit of {limit / 2**20:.0f} MiB"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _send_json(send, 413, message)
            return
        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> dict:
            nonlocal received, exceeded
            event = await receive()
            if event["type"] == "http.request":
                received += len(event.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise _TooLarge
            return event

        async def guarded_send(event: dict) -> None:
            nonlocal started
            if exceeded:
                return  # the app's own answer to the broken body is replaced by the 413
            started = True
            await send(event)

        with suppress(_TooLarge):
            await self.app(scope, limited_receive, guarded_send)
        if exceeded and not started:
            await _send_json(send, 413, message)


class SameOrigin:
    """State-changing requests whose ``Origin`` names another host are refused (403)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope["method"] in UNSAFE_METHODS:
            headers = dict(scope["headers"])
            origin = headers.get(b"origin")
            host = headers.get(b"host", b"").decode("latin-1")
            if origin is not None and urlsplit(origin.decode("latin-1")).netloc != host:
                await _send_json(send, 403, "cross-origin request refused")
                return
        await self.app(scope, receive, send)


class SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every answer."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(event: dict) -> None:
            if event["type"] == "http.response.start":
                names = {k.lower() for k, _ in event.get("headers", [])}
                extra = [
                    (k.lower().encode(), v.encode())
                    for k, v in SECURITY_HEADERS.items()
                    if k.lower().encode() not in names
                ]
                event = {**event, "headers": [*event.get("headers", []), *extra]}
            await send(event)

        await self.app(scope, receive, with_headers)

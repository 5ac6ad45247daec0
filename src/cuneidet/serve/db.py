"""The app's SQLite database through SQLAlchemy: tables, engine, and simple migrations.

Schema changes are numbered: :data:`MIGRATIONS` maps a version to the SQL statements that bring
the database from the version before to it; :func:`open_database` creates a new database at
:data:`SCHEMA_VERSION` and upgrades an older one in order, each step in one transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    event,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

from cuneidet.errors import ConfigError

#: Current schema version; :data:`MIGRATIONS` holds the steps from version 1 up to it.
SCHEMA_VERSION = 1
MIGRATIONS: dict[int, list[str]] = {}


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Meta(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Session(Base):
    """A login session; the cookie holds the token, the table only its SHA-256."""

    __tablename__ = "sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    user: Mapped[User] = relationship()


class Collection(Base):
    __tablename__ = "collections"
    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    photos: Mapped[list[Photo]] = relationship(
        back_populates="collection", cascade="all, delete-orphan", order_by="Photo.id"
    )


class Photo(Base):
    """An uploaded photograph; ``stored_name`` (server-generated) names its files on disk."""

    __tablename__ = "photos"
    id: Mapped[int] = mapped_column(primary_key=True)
    collection_id: Mapped[int] = mapped_column(
        ForeignKey("collections.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    stored_name: Mapped[str] = mapped_column(String(64), unique=True)
    format: Mapped[str] = mapped_column(String(8))
    bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    display_width: Mapped[int] = mapped_column(Integer)
    display_height: Mapped[int] = mapped_column(Integer)
    scale: Mapped[float | None] = mapped_column(Float, nullable=True)
    scale_auto: Mapped[float | None] = mapped_column(Float, nullable=True)
    scale_used: Mapped[float | None] = mapped_column(Float, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="new")
    reviewed: Mapped[bool] = mapped_column(Boolean, default=False)
    review_threshold: Mapped[float] = mapped_column(Float, default=0.3)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    collection: Mapped[Collection] = relationship(back_populates="photos")
    signs: Mapped[list[Sign]] = relationship(
        back_populates="photo", cascade="all, delete-orphan", order_by="Sign.id"
    )
    jobs: Mapped[list[Job]] = relationship(
        back_populates="photo", cascade="all, delete-orphan", order_by="Job.id"
    )


class Sign(Base):
    """One sign box on a photo (photo pixels) with its class and, from the model, its top-k."""

    __tablename__ = "signs"
    id: Mapped[int] = mapped_column(primary_key=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"), index=True)
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    x2: Mapped[float] = mapped_column(Float)
    y2: Mapped[float] = mapped_column(Float)
    label: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    line: Mapped[int] = mapped_column(Integer, default=0)
    topk: Mapped[list[Any]] = mapped_column(JSON, default=list)
    source: Mapped[str] = mapped_column(String(8), default="model")
    edited: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    model_label: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    photo: Mapped[Photo] = relationship(back_populates="signs")


class Job(Base):
    """A detection job; the queue is this table, so it survives a server restart."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(primary_key=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"), index=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    scale: Mapped[float | None] = mapped_column(Float, nullable=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="queued")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    photo: Mapped[Photo] = relationship(back_populates="jobs")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def open_database(path: Path) -> sessionmaker:
    """A session factory on the SQLite file ``path`` (created, or migrated to the current
    schema). A database written by a newer cuneidet is refused, never downgraded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        f"sqlite:///{path}", connect_args={"check_same_thread": False, "timeout": 10}
    )
    event.listen(engine, "connect", _sqlite_pragmas)
    _migrate(engine, path)
    return sessionmaker(engine, expire_on_commit=False)


def _migrate(engine: Engine, path: Path) -> None:
    with engine.begin() as connection:
        has_meta = connection.execute(
            text("SELECT name FROM sqlite_master WHERE type='table' AND name='meta'")
        ).first()
        version = 0
        if has_meta:
            row = connection.execute(text("SELECT value FROM meta WHERE key='schema'")).first()
            version = int(row[0]) if row else 0
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"{path} has schema version {version}, newer than this cuneidet's {SCHEMA_VERSION}: "
            "upgrade cuneidet or point serve.data_dir at another folder"
        )
    if version == 0:
        Base.metadata.create_all(engine)
        with engine.begin() as connection:
            connection.execute(
                text("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema', :v)"),
                {"v": str(SCHEMA_VERSION)},
            )
        return
    for step in range(version + 1, SCHEMA_VERSION + 1):
        with engine.begin() as connection:
            for statement in MIGRATIONS[step]:
                connection.execute(text(statement))
            connection.execute(
                text("UPDATE meta SET value = :v WHERE key = 'schema'"), {"v": str(step)}
            )

"""Settings of the web application (``configs/serve.yaml``), checked once at start."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cuneidet.errors import ConfigError


@dataclass(frozen=True)
class ServeSettings:
    """Everything the app needs besides the detector itself.

    ``data_dir`` holds the SQLite database, the uploaded photos and the model cache;
    ``model_file`` is an exported ONNX model (``cuneidet-export``), ``ckpt_path`` a checkpoint
    exported into the model cache at start; with neither, the newest export or sign-detector
    checkpoint under ``search_dir`` is used. ``font_file`` is served as the cuneiform web font;
    ``oracle_ckpt`` is the oracle-bone classifier of the draw page.
    """

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    model_file: Path | None = None
    ckpt_path: Path | None = None
    search_dir: Path | None = None
    font_file: Path | None = None
    oracle_ckpt: Path | None = None
    threads: int = 2
    workers: int = 1
    max_upload_bytes: int = 200 * 1024 * 1024
    max_pixels: int = 120_000_000
    max_files_per_upload: int = 50
    display_max_side: int = 3000
    session_hours: float = 12.0
    secure_cookies: bool | None = None
    login_attempts: int = 5
    login_window_s: float = 300.0
    job_max_attempts: int = 3
    min_score: float = 0.05
    top_k: int = 5
    inference: Mapping[str, Any] = field(default_factory=dict)
    recogniser: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        positive = (
            "port",
            "threads",
            "workers",
            "max_upload_bytes",
            "max_pixels",
            "max_files_per_upload",
            "display_max_side",
            "session_hours",
            "login_attempts",
            "login_window_s",
            "job_max_attempts",
            "top_k",
        )
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"serve.{name} must be a positive number, got {value!r}")
            if not value > 0:
                raise ConfigError(f"serve.{name} must be positive, got {value}")
        if isinstance(self.min_score, bool) or not isinstance(self.min_score, int | float):
            raise ConfigError(f"serve.min_score must be a number in [0, 1), got {self.min_score!r}")
        if not 0.0 <= self.min_score < 1.0:
            raise ConfigError(f"serve.min_score must be in [0, 1), got {self.min_score}")

    @property
    def database(self) -> Path:
        return self.data_dir / "cuneidet.sqlite"

    @property
    def upload_dir(self) -> Path:
        return self.data_dir / "photos"

    @property
    def model_dir(self) -> Path:
        return self.data_dir / "models"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ServeSettings:
        """Settings from a config mapping; unknown keys are a :class:`ConfigError`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown serve setting(s) {unknown}; known: {sorted(known)}")
        if values.get("data_dir") in (None, ""):
            raise ConfigError("serve.data_dir is required (the folder of the database and photos)")
        paths = ("data_dir", "model_file", "ckpt_path", "search_dir", "font_file", "oracle_ckpt")
        converted = {
            key: (Path(value) if key in paths and value not in (None, "") else value)
            for key, value in values.items()
        }
        for key in paths:
            if converted.get(key) == "":
                converted[key] = None
        for key in ("inference", "recogniser"):
            converted[key] = {
                k: v for k, v in dict(converted.get(key) or {}).items() if v is not None
            }
        return cls(**converted)

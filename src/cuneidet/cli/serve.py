"""``cuneidet-serve``: the web application under uvicorn (``configs/serve.yaml``)."""

from __future__ import annotations

import getpass
import logging
import os
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from cuneidet.cli.common import task_wrapper
from cuneidet.config import config_dir
from cuneidet.data.location import resolve_data_dir
from cuneidet.errors import ConfigError, CuneidetError
from cuneidet.serve.settings import ServeSettings

log = logging.getLogger("cuneidet.serve")

FONT_NAME = "NotoSansCuneiform-Regular.ttf"
PASSWORD_ENV = "CUNEIDET_ADMIN_PASSWORD"


def serve_settings(cfg: DictConfig) -> ServeSettings:
    values: dict[str, Any] = OmegaConf.to_container(cfg.serve, resolve=True)  # type: ignore[assignment]
    if not values.get("font_file"):
        values["font_file"] = default_font(cfg.paths.get("data_dir"))
    return ServeSettings.from_mapping(values)


def default_font(data_dir: str | None) -> Path | None:
    """Noto Sans Cuneiform in the data folder's ``fonts/``, when the data folder has it."""
    try:
        candidate = resolve_data_dir(data_dir) / "fonts" / FONT_NAME
    except (CuneidetError, OSError):
        return None
    return candidate if candidate.is_file() else None


def create_admin(settings: ServeSettings, username: str) -> None:
    from cuneidet.serve.accounts import add_account

    password = os.environ.get(PASSWORD_ENV) or getpass.getpass(f"password for {username}: ")
    add_account(settings, username, password, admin=True)
    log.info("administrator %s created in %s", username, settings.database)


def serve(cfg: DictConfig) -> None:
    settings = serve_settings(cfg)
    if cfg.get("create_admin"):
        create_admin(settings, str(cfg.create_admin))
        return
    import uvicorn

    from cuneidet.serve.app import create_app

    app = create_app(settings)
    log.info(
        "serving on http://%s:%d/ (data in %s)", settings.host, settings.port, settings.data_dir
    )
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
    except OSError as error:
        raise ConfigError(f"cannot serve on {settings.host}:{settings.port}: {error}") from error


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="serve")
def main(cfg: DictConfig) -> None:
    task_wrapper(serve)(cfg)


if __name__ == "__main__":
    main()

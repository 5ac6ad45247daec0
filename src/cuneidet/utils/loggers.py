"""Experiment loggers: W&B that falls back to offline mode without a key."""

from __future__ import annotations

import logging
import netrc
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def wandb_has_credentials() -> bool:
    """True when an API key is configured (env var or the netrc entry `wandb login` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        auth = netrc.netrc().authenticators("api.wandb.ai")
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return bool(auth and auth[2])


def resolve_wandb_mode(mode: str = "auto") -> str:
    """``WANDB_MODE`` wins; ``auto`` means online with credentials, offline without."""
    env = os.environ.get("WANDB_MODE")
    if env in ("online", "offline", "disabled", "dryrun", "run"):
        return "offline" if env == "dryrun" else ("online" if env == "run" else env)
    if mode not in ("auto", "online", "offline", "disabled"):
        raise ValueError(f"logger.wandb.mode must be auto|online|offline|disabled, got {mode!r}")
    if mode == "auto":
        return "online" if wandb_has_credentials() else "offline"
    return mode


def wandb_logger(
    project: str = "cuneidet",
    group: str | None = None,
    name: str | None = None,
    tags: Sequence[str] | None = None,
    save_dir: str = ".",
    mode: str = "auto",
    job_type: str | None = None,
    **kwargs: Any,
) -> Any:
    """A Lightning ``WandbLogger``; offline runs land in ``<save_dir>/wandb/offline-run-*``."""
    from pytorch_lightning.loggers import WandbLogger

    resolved = resolve_wandb_mode(mode)
    if resolved == "offline":
        log.info("W&B runs offline (no API key or WANDB_MODE=offline); sync with `wandb sync`")
    os.makedirs(save_dir, exist_ok=True)
    return WandbLogger(
        project=project,
        group=group,
        name=name,
        tags=list(tags) if tags else None,
        save_dir=save_dir,
        offline=resolved == "offline",
        mode=resolved if resolved == "disabled" else None,
        job_type=job_type,
        **kwargs,
    )


def finish_wandb() -> None:
    """Close the active W&B run so the next multirun job starts its own."""
    import sys

    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()


def log_report_to_wandb(
    loggers: Sequence[Any], report_dir: str | Path, prefix: str = "test"
) -> None:
    """Send the per-class AP table, PR curve and annotated segments of a report to W&B loggers."""
    from pytorch_lightning.loggers import WandbLogger

    report_dir = Path(report_dir)
    for logger in loggers:
        if not isinstance(logger, WandbLogger):
            continue
        table = report_dir / "per_class_ap.csv"
        if table.is_file():
            import pandas as pd

            logger.log_table(key=f"{prefix}/per_class_ap", dataframe=pd.read_csv(table))
        images = sorted((report_dir / "segments").glob("*.png"))
        if (report_dir / "pr_curve.png").is_file():
            logger.log_image(key=f"{prefix}/pr_curve", images=[str(report_dir / "pr_curve.png")])
        if images:
            logger.log_image(
                key=f"{prefix}/segments",
                images=[str(p) for p in images],
                caption=[p.stem for p in images],
            )

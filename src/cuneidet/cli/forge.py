"""``cuneidet-forge``: render synthetic tablet photographs, or the forge-vs-real sheet."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from cuneidet.cli.common import task_wrapper
from cuneidet.config import config_dir
from cuneidet.data.location import resolve_data_dir
from cuneidet.data.sources import build_photo_source
from cuneidet.errors import ConfigError, CuneidetError
from cuneidet.forge.runner import render_many
from cuneidet.forge.sheet import forge_vs_real_sheet
from cuneidet.forge.store import Forge
from cuneidet.utils.io import write_json
from cuneidet.utils.provenance import command_line, git_commit, hardware_description, save_config

log = logging.getLogger("cuneidet.forge")
ACTIONS = ("render", "sheet")


def build_forge(cfg: DictConfig) -> Forge:
    settings = cfg.forge
    box_sets = settings.get("box_sets")
    return Forge(
        resolve_data_dir(cfg.data_dir),
        forge_dir=settings.forge_dir,
        params=OmegaConf.to_container(settings.params, resolve=True),
        seed=settings.seed,
        layout=settings.layout,
        font=settings.font,
        box_sets=None if box_sets is None else list(box_sets),
    )


def choose_tablets(forge: Forge, cfg: DictConfig) -> list[str]:
    tablets = forge.planner.tablets_of(cfg.collections, cfg.box_sets, cfg.tablets)
    if not tablets:
        raise ConfigError(
            "No tablets chosen: name collections=[saa01,...], box_sets=[train_full,...] or "
            "tablets=[P334610,...]"
        )
    return tablets[: cfg.limit] if cfg.limit else tablets


def forge_app(cfg: DictConfig) -> dict[str, Any]:
    if cfg.action not in ACTIONS:
        raise ConfigError(f"Unknown action {cfg.action!r}; valid: {', '.join(ACTIONS)}")
    output_dir = Path(cfg.paths.output_dir)
    save_config(cfg, output_dir)
    forge = build_forge(cfg)
    if cfg.action == "sheet":
        real = build_photo_source("folder", forge.data_dir, folder=cfg.sheet.image_folder)
        out = forge_vs_real_sheet(
            forge,
            real,
            cfg.sheet.out,
            count=cfg.sheet.views,
            sets=list(cfg.sheet.sets),
            tile_height=cfg.sheet.tile_height,
        )
        log.info("wrote %s", out)
        return {"sheet": str(out)}
    tablets = choose_tablets(forge, cfg)
    log.info("forging %d tablets into %s", len(tablets), forge.directory)
    report = render_many(
        forge, tablets, workers=cfg.workers, overwrite=cfg.overwrite, progress=cfg.progress
    )
    if report.failed and not report.rendered and not report.cached:
        # a failure every tablet shares (the font, the settings) is an error, not a skip
        tablet, reason = next(iter(report.failed.items()))
        raise CuneidetError(
            f"all {len(report.failed)} tablets failed, nothing was rendered; {tablet}: {reason}"
        )
    summary = {
        **report.as_dict(),
        "forge_dir": str(forge.directory),
        "command": command_line(),
        "git_commit": git_commit(),
        "hardware": hardware_description(),
    }
    write_json(output_dir / "forge_report.json", summary)
    log.info(
        "rendered %d, cached %d, failed %d tablets in %.1f s (%.2f tablets/s with %d workers)",
        len(report.rendered),
        len(report.cached),
        len(report.failed),
        report.seconds,
        report.tablets_per_s,
        report.workers,
    )
    return summary


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="forge")
def main(cfg: DictConfig) -> None:
    task_wrapper(forge_app)(cfg)


if __name__ == "__main__":
    main()

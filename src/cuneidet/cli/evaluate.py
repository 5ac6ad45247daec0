"""``cuneidet-eval``: evaluate a checkpoint on data.test_sets with the paper's protocol."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig

from cuneidet.cli.common import task_wrapper
from cuneidet.config import config_dir
from cuneidet.eval.evaluate import write_test_report
from cuneidet.models.checkpoint import load_module
from cuneidet.utils.instantiate import instantiate, instantiate_list
from cuneidet.utils.provenance import command_line, git_commit, save_config

log = logging.getLogger("cuneidet.eval")


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    output_dir = Path(cfg.paths.output_dir)
    save_config(cfg, output_dir)
    pl.seed_everything(cfg.seed, workers=True)
    module = load_module(
        cfg.ckpt_path,
        inference=cfg.inference,
        recogniser=cfg.get("recogniser"),
        watershed=cfg.get("watershed"),
    )
    # the checkpoint's working scale (data.sign_height of its training)
    datamodule = instantiate(
        cfg.data, num_classes=module.detector.num_classes, sign_height=module.sign_height
    )
    loggers = instantiate_list(cfg.get("logger"))
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=loggers, callbacks=[])
    trainer.test(module, datamodule=datamodule)
    # a recogniser's localiser alone, class-agnostic (TwoStageModule logs it)
    loc_ap = trainer.callback_metrics.get("test/loc_AP")
    return write_test_report(
        module,
        datamodule,
        output_dir,
        num_images=cfg.report.num_images,
        draw_score_thresh=cfg.report.draw_score_thresh,
        extra={
            "checkpoint": str(cfg.ckpt_path),
            "command": command_line(),
            "git_commit": git_commit(),
            "inference": dict(module.inference),
            **({"loc_ap": round(float(loc_ap), 2)} if loc_ap is not None else {}),
        },
    )


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="eval")
def main(cfg: DictConfig) -> float | None:
    metrics = task_wrapper(evaluate)(cfg)
    return metrics.get("map") if metrics else None


if __name__ == "__main__":
    main()
